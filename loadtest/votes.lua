-- wrk script for `loadtest/run votes`. Run with as many threads as connections (-t N -c N): wrk
-- gives a Lua state to each thread, not to each connection, so one connection per thread is the
-- way to give every connection its own user. Thread i votes as the user of line i of
-- $LOADTEST_TOKENS on polls start_i, start_i + 1, ... (wrapping at $LOADTEST_POLLS), so no
-- (user, poll) pair repeats and every vote can be accepted. Counts answers by status.

local thread_count = 0
local threads = {}
local tokens = nil

local function read_tokens()
  local list = {}
  local path = os.getenv("LOADTEST_TOKENS") or error("LOADTEST_TOKENS is not set")
  for line in io.lines(path) do
    if line ~= "" then list[#list + 1] = line end
  end
  return list
end

function setup(thread)
  tokens = tokens or read_tokens()
  thread_count = thread_count + 1
  if thread_count > #tokens then error("more wrk threads than tokens") end
  local polls = tonumber(os.getenv("LOADTEST_POLLS") or error("LOADTEST_POLLS is not set"))
  local users = tonumber(os.getenv("LOADTEST_USERS") or #tokens)
  local stride = math.max(1, math.floor(polls / users))
  thread:set("token", tokens[thread_count])
  thread:set("polls", polls)
  thread:set("next_poll", 1 + ((thread_count - 1) * stride) % polls)
  threads[#threads + 1] = thread
end

function init(args)
  statuses = {}
end

function request()
  local poll = next_poll
  next_poll = next_poll % polls + 1
  -- After `polls` votes a user has voted on every poll and gets 409s (counted as non-200).
  return wrk.format("POST", "/api/polls/" .. poll .. "/vote",
    { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" },
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
