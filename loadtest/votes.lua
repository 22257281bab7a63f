-- wrk script for `loadtest/run votes`: every connection votes, as LOADTEST_USERS users in all,
-- each on its own stretch of the polls. wrk gives a Lua state to each thread (not to each
-- connection), so thread t owns users t, t + T, t + 2T, ... (T threads) and its requests take
-- them in turn; user u votes on polls start_u, start_u + 1, ... (wrapping at $LOADTEST_POLLS),
-- so no (user, poll) pair repeats and every vote can be accepted. With as many users as
-- connections there are as many users as requests in flight. Counts answers by status.

local thread_count = 0
local threads = {}

local function read_tokens()
  local list = {}
  local path = os.getenv("LOADTEST_TOKENS") or error("LOADTEST_TOKENS is not set")
  for line in io.lines(path) do
    if line ~= "" then list[#list + 1] = line end
  end
  return list
end

function setup(thread)
  thread_count = thread_count + 1
  thread:set("index", thread_count)
  threads[#threads + 1] = thread
end

function init(args)
  statuses = {}
  local tokens = read_tokens()
  local polls = tonumber(os.getenv("LOADTEST_POLLS") or error("LOADTEST_POLLS is not set"))
  local users = tonumber(os.getenv("LOADTEST_USERS") or #tokens)
  local step = tonumber(os.getenv("LOADTEST_THREADS") or error("LOADTEST_THREADS is not set"))
  if users > #tokens then error("more users than tokens") end
  local stride = math.max(1, math.floor(polls / users))
  mine = {}
  for u = index, users, step do
    mine[#mine + 1] = { token = tokens[u], next_poll = 1 + ((u - 1) * stride) % polls }
  end
  if #mine == 0 then error("a wrk thread without users: use at most LOADTEST_USERS threads") end
  total_polls = polls
  turn = 0
end

function request()
  turn = turn % #mine + 1
  local user = mine[turn]
  local poll = user.next_poll
  user.next_poll = poll % total_polls + 1
  -- After `polls` votes a user has voted on every poll and gets 409s (counted as non-200).
  return wrk.format("POST", "/api/polls/" .. poll .. "/vote",
    { ["Authorization"] = "Bearer " .. user.token, ["Content-Type"] = "application/json" },
    '{"optionIndex":' .. (poll % 2) .. '}')
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local ok = counts[200] or 0
  local parts = {}
  local other = 0
  for status, n in pairs(counts) do
    if status ~= 200 then
      other = other + n
      parts[#parts + 1] = string.format('"%d":%d', status, n)
    end
  end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"ok":%d,"ok_per_s":%.1f,"non_200":%d,"statuses":{%s},' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, ok, ok / seconds, other, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
