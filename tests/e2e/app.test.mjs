// Browser tests of the web client against real `vote serve` processes (see harness.mjs).
// One file, so one browser and one main server serve every test; each test asserts what a
// person sees. Run from the repository root: node --test tests/e2e/
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AxeBuilder,
  cleanupWorkDir,
  createDatabase,
  flushRedis,
  launchBrowser,
  logDir,
  repoRoot,
  signedInContext,
  startServer,
  uniqueName,
  watchPage,
} from './harness.mjs';

const kTimeout = 10_000;
const kScreens = join(repoRoot, 'web/screenshots');
const kViewports = [
  { width: 390, height: 844 },
  { width: 1280, height: 800 },
];

let database;
let server;
let browser;
let failed = false;

before(async () => {
  await flushRedis();
  database = await createDatabase();
  server = await startServer(database);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  try {
    await server?.stop();
  } finally {
    await database?.drop();
    if (failed) {
      console.log(`e2e: server logs kept in ${logDir}`);
    } else {
      cleanupWorkDir();
    }
  }
});

/** A test that remembers failing, so the logs are kept. */
function e2e(name, fn) {
  test(name, { timeout: 60_000 }, async (t) => {
    try {
      await fn(t);
    } catch (error) {
      failed = true;
      throw error;
    }
  });
}

async function open(page, target, path) {
  await page.goto(`${target.url}${path}`);
  await page.locator('main h1').first().waitFor({ timeout: kTimeout });
}

function cardOf(page, title) {
  return page.locator('article.card').filter({ has: page.getByRole('heading', { name: title, exact: true }) });
}

function tag(prefix) {
  return `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
}

/** A section of the profile ("My polls", "Polls I voted on"), found by its heading like a screen reader would. */
function profileList(page, name) {
  return page.getByRole('region', { name, exact: true });
}

/** The titles a profile list shows, once they are `expected` (or its last state when they never are). */
async function expectTitles(list, expected) {
  let titles = [];
  for (const deadline = Date.now() + kTimeout; Date.now() < deadline; ) {
    titles = await list.locator('.summary-title').allTextContents();
    if (JSON.stringify(titles) === JSON.stringify(expected)) {
      break;
    }
    await sleep(50);
  }
  assert.deepEqual(titles, expected);
}

async function expectText(locator, text) {
  await locator.filter({ hasText: text }).first().waitFor({ timeout: kTimeout });
}

/** Everything the user sees should be free of serious or critical axe findings. */
async function assertAccessible(page, screen) {
  const result = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']).analyze();
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(
    bad.map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`),
    [],
    `axe on the ${screen} screen`,
  );
}

/** `fullPage`: the whole screen, not only what fits the viewport (the profile's lists are below it). */
async function screenshot(page, name, { fullPage = false } = {}) {
  if (process.env.VOTE_E2E_SCREENSHOTS === '0') {
    return;
  }
  mkdirSync(kScreens, { recursive: true });
  for (const viewport of kViewports) {
    await page.setViewportSize(viewport);
    await page.evaluate(() => document.activeElement instanceof HTMLElement && document.activeElement.blur());
    await sleep(150); // layout settles after the resize
    await page.screenshot({ path: join(kScreens, `${name}-${viewport.width}x${viewport.height}.png`), fullPage });
  }
  await page.setViewportSize(kViewports[0]);
}

// Runs first, so the feed holds only these polls and the pictures stay the same from run to run.
e2e('every screen passes axe (no serious or critical finding) and is photographed at 390x844 and 1280x800', async () => {
  const api = server.api;
  const voters = [];
  for (const name of ['sam_k', 'lee_w', 'noor_a', 'jo_b']) {
    voters.push(await api.register(name));
  }
  const maria = await api.register('maria');
  const polls = [];
  for (const poll of [
    { title: 'Where should the team go for lunch on Friday?', options: ['Ramen', 'Tacos', 'Falafel', 'Pizza'], tags: ['food', 'friday'] },
    { title: 'Tabs or spaces?', options: ['Tabs', 'Spaces'], tags: ['programming'] },
    { title: 'Best time for the weekly meeting?', options: ['9:00', '11:00', '14:00', '16:30'], tags: ['work'] },
    {
      title: 'Which language should we use for the next service?',
      options: ['Go', 'Rust', 'C++', 'Python'],
      tags: ['programming', 'backend'],
    },
  ]) {
    polls.push(await api.createPoll(voters[polls.length % voters.length].token, poll));
  }
  const votes = [
    [0, 0, 1, 0, 2],
    [1, 1, 0, 1],
    [2, 1, 2, 0],
    [3, 0, 1, 1, 3],
  ];
  for (const [pollIndex, ...choices] of votes) {
    for (const [i, option] of choices.entries()) {
      await api.vote(voters[i].token, polls[pollIndex].id, option);
    }
  }

  // Login, and sign-up with the API's field errors.
  const anonymous = await browser.newContext({ viewport: kViewports[0] });
  const page = await anonymous.newPage();
  const watch = watchPage(page);
  await open(page, server, '/');
  await page.getByRole('heading', { name: 'Log in' }).waitFor();
  await assertAccessible(page, 'login');
  await screenshot(page, 'login');
  await open(page, server, '/signup');
  await page.getByLabel('Username').fill('x');
  await page.getByLabel('Email').fill('not-an-email');
  await page.getByLabel('Password').fill('short');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.locator('#password-error').waitFor({ timeout: kTimeout });
  await assertAccessible(page, 'sign-up with errors');
  await screenshot(page, 'signup-errors');
  watch.assertClean();
  await anonymous.close();

  // Feed: vote on the first poll so the picture shows results above an open poll.
  const context = await signedInContext(browser, server, maria);
  const feed = await context.newPage();
  const watchFeed = watchPage(feed);
  await open(feed, server, '/');
  const first = cardOf(feed, 'Which language should we use for the next service?');
  await first.getByRole('button', { name: 'Go', exact: true }).click();
  await expectText(first.locator('.results-total'), '5 votes');
  await feed.locator('.live-status.live').waitFor({ timeout: kTimeout });
  await feed.evaluate(() => window.scrollTo(0, 0));
  await assertAccessible(feed, 'feed');
  await screenshot(feed, 'feed');

  await feed.getByRole('link', { name: 'New poll' }).click();
  await feed.getByLabel('Question').fill('What should we name the new meeting room?');
  await feed.getByLabel('Option 1').fill('Ada');
  await feed.getByLabel('Option 2').fill('Grace');
  await feed.getByRole('button', { name: 'Add option' }).click();
  await feed.getByLabel('Option 3').fill('grace');
  await feed.getByLabel('Tag 1').fill('Office!');
  await feed.getByRole('button', { name: 'Publish poll' }).click();
  await feed.locator('#tags-0-error').waitFor({ timeout: kTimeout });
  await assertAccessible(feed, 'create poll with errors');
  await screenshot(feed, 'create-errors');
  await feed.getByLabel('Option 3').fill('Hedy');
  await feed.getByLabel('Tag 1').fill('office');
  await feed.getByRole('button', { name: 'Publish poll' }).click();
  await feed.getByRole('heading', { name: 'Your poll is live' }).waitFor({ timeout: kTimeout });
  await expectText(feed.locator('.results-total'), '0 votes');
  await assertAccessible(feed, 'poll');
  await screenshot(feed, 'poll');

  await feed.getByRole('link', { name: 'New poll' }).click();
  await feed.getByRole('heading', { name: 'New poll' }).waitFor();
  await assertAccessible(feed, 'create poll');
  await screenshot(feed, 'create');

  await feed.getByRole('link', { name: 'Profile' }).click();
  await feed.getByRole('heading', { name: 'maria' }).waitFor({ timeout: kTimeout });
  await feed.locator('.hot li').first().waitFor({ timeout: kTimeout });
  await expectTitles(profileList(feed, 'My polls'), ['What should we name the new meeting room?']);
  await expectTitles(profileList(feed, 'Polls I voted on'), ['Which language should we use for the next service?']);
  await assertAccessible(feed, 'profile');
  await screenshot(feed, 'profile', { fullPage: true });
  watchFeed.assertClean();
  await context.close();
});

e2e('a poll created in one browser is voted on in another and the first sees the results change live', async () => {
  const creator = await browser.newContext({ viewport: kViewports[0] });
  const page = await creator.newPage();
  const watch = watchPage(page);
  let navigations = 0;
  page.on('framenavigated', (frame) => frame === page.mainFrame() && navigations++);

  const name = uniqueName('ana');
  await open(page, server, '/signup');
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Email').fill(`${name.toLowerCase()}@example.com`);
  await page.getByLabel('Password').fill('a long enough password');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('heading', { name: 'Your feed' }).waitFor({ timeout: kTimeout });

  // The second browser has its feed open before the poll exists: it is told about the new poll.
  const voter = await signedInContext(browser, server, await server.api.register());
  const other = await voter.newPage();
  const watchOther = watchPage(other);
  await open(other, server, '/');
  await other.locator('.live-status.live').waitFor({ timeout: kTimeout });

  const title = `Live poll ${name}`;
  await page.getByRole('link', { name: 'New poll' }).click();
  await page.getByLabel('Question').fill(title);
  await page.getByLabel('Option 1').fill('Mountains');
  await page.getByLabel('Option 2').fill('Sea');
  await page.getByLabel('Tag 1').fill('travel');
  await page.getByRole('button', { name: 'Publish poll' }).click();
  await page.getByRole('heading', { name: 'Your poll is live' }).waitFor({ timeout: kTimeout });
  await expectText(page.locator('.results-total'), '0 votes');
  const navigationsBefore = navigations;

  await other.getByRole('button', { name: /new poll was posted/ }).click();
  const card = cardOf(other, title);
  await card.getByRole('button', { name: 'Sea', exact: true }).click();
  await expectText(card.locator('.results-total'), '1 vote');

  await expectText(page.locator('.results-total'), '1 vote');
  await expectText(page.locator('.result', { hasText: 'Sea' }), '100%');
  assert.equal(navigations, navigationsBefore, 'the first browser did not reload');
  watch.assertClean();
  watchOther.assertClean();
  await creator.close();
  await voter.close();
});

e2e('the profile lists my polls and the polls I voted on, and their counts change live', async () => {
  const owner = await server.api.register();
  const theirs = tag('theirs');
  const mine = tag('mine');
  const season = `Which season is best? ${theirs}`;
  const skipped = `A poll to skip ${theirs}`;
  const votedPoll = await server.api.createPoll(owner.token, { title: season, options: ['Spring', 'Summer', 'Autumn'], tags: [theirs] });
  await server.api.createPoll(owner.token, { title: skipped, options: ['This', 'That'], tags: [theirs] });
  await server.api.createPoll(owner.token, { title: `A poll left open ${theirs}`, options: ['Up', 'Down'], tags: [theirs] });
  const others = [];
  for (let i = 0; i < 3; i++) {
    others.push(await server.api.register());
  }
  await server.api.vote(others[0].token, votedPoll.id, 0);
  await server.api.vote(others[1].token, votedPoll.id, 1);

  const context = await signedInContext(browser, server, await server.api.register());
  const page = await context.newPage();
  const watch = watchPage(page);
  // The polls the live connection follows, as the server acknowledged them.
  const subscribed = new Set();
  page.on('websocket', (ws) =>
    ws.on('framereceived', ({ payload }) => {
      const message = JSON.parse(String(payload));
      if (message.type === 'subscribed') {
        message.pollIds.forEach((id) => subscribed.add(id));
      } else if (message.type === 'unsubscribed') {
        message.pollIds.forEach((id) => subscribed.delete(id));
      }
    }),
  );
  let navigations = 0;
  page.on('framenavigated', (frame) => frame === page.mainFrame() && navigations++);

  // A new user: both lists say so.
  await open(page, server, '/me');
  await expectText(profileList(page, 'My polls').locator('.list-empty'), 'You have not created a poll yet.');
  await expectText(profileList(page, 'Polls I voted on').locator('.list-empty'), 'You have not voted yet.');
  await assertAccessible(page, 'profile with empty lists');

  // Two polls of my own, through the form.
  const created = [];
  for (const [title, options] of [
    [`My first poll ${mine}`, ['Yes', 'No']],
    [`My second poll ${mine}`, ['Left', 'Right', 'Centre']],
  ]) {
    await page.getByRole('link', { name: 'New poll' }).click();
    await page.getByLabel('Question').fill(title);
    await page.getByLabel('Option 1').fill(options[0]);
    await page.getByLabel('Option 2').fill(options[1]);
    if (options[2]) {
      await page.getByRole('button', { name: 'Add option' }).click();
      await page.getByLabel('Option 3').fill(options[2]);
    }
    await page.getByLabel('Tag 1').fill(mine);
    await page.getByRole('button', { name: 'Publish poll' }).click();
    await page.getByRole('heading', { name: 'Your poll is live' }).waitFor({ timeout: kTimeout });
    created.push({ title, id: Number(new URL(page.url()).pathname.split('/').pop()) });
  }

  // A vote on someone else's poll, a skip of another, and one left unanswered: only the vote counts.
  await open(page, server, `/?tag=${theirs}`);
  const seasonCard = cardOf(page, season);
  await seasonCard.getByRole('button', { name: 'Autumn', exact: true }).click();
  await expectText(seasonCard.locator('.results-total'), '3 votes');
  await cardOf(page, skipped).getByRole('button', { name: /^Skip/ }).click();
  await cardOf(page, skipped).waitFor({ state: 'detached', timeout: kTimeout });

  subscribed.clear(); // from here on, only what the profile asks for
  await page.getByRole('link', { name: 'Profile' }).click();
  const myPolls = profileList(page, 'My polls');
  const myVotes = profileList(page, 'Polls I voted on');
  await expectTitles(myPolls, [created[1].title, created[0].title]);
  await expectTitles(myVotes, [season]);
  for (const { title } of created) {
    const summary = myPolls.locator('.summary').filter({ hasText: title });
    await expectText(summary.locator('.results-total'), '0 votes');
    assert.equal(await summary.getByRole('link', { name: `Show polls tagged #${mine}` }).count(), 1, 'its tag is shown');
  }
  assert.equal(await myPolls.locator('.result.mine').count(), 0, 'no vote of mine on my own polls');
  const votedSummary = myVotes.locator('.summary');
  await expectText(votedSummary.locator('.results-total'), '3 votes');
  assert.deepEqual(await votedSummary.locator('.result-text').allTextContents(), ['Spring', 'Summer', 'Autumn · your vote']);
  assert.equal(await votedSummary.locator('.result.mine').count(), 1);
  assert.deepEqual(await votedSummary.locator('.result-figures').allTextContents(), [
    '33.3% (1 vote)',
    '33.3% (1 vote)',
    '33.3% (1 vote)',
  ]);
  assert.equal(await votedSummary.getByRole('link', { name: `Show polls tagged #${theirs}` }).count(), 1);
  assert.equal(await page.getByRole('button', { name: /^Load more/ }).count(), 0, 'one page each: no "Load more"');
  await votedSummary.getByRole('link', { name: season }).waitFor();
  await assertAccessible(page, 'profile with lists');

  // Another browser votes on my first poll: its count on the profile changes without a reload.
  for (let i = 0; !(subscribed.has(created[0].id) && subscribed.has(votedPoll.id)) && i < 200; i++) {
    await sleep(50);
  }
  assert.ok(subscribed.has(created[0].id) && subscribed.has(votedPoll.id), 'the profile follows its polls live');
  const navigationsBefore = navigations;
  const voter = await signedInContext(browser, server, others[2]);
  const other = await voter.newPage();
  const watchOther = watchPage(other);
  await open(other, server, `/polls/${created[0].id}`);
  await cardOf(other, created[0].title).getByRole('button', { name: 'No', exact: true }).click();
  await expectText(cardOf(other, created[0].title).locator('.results-total'), '1 vote');

  const first = myPolls.locator('.summary').filter({ hasText: created[0].title });
  await expectText(first.locator('.results-total'), '1 vote');
  await expectText(first.locator('.result', { hasText: 'No' }).locator('.result-figures'), '100% (1 vote)');
  await expectText(first.locator('.result', { hasText: 'Yes' }).locator('.result-figures'), '0% (0 votes)');
  await expectText(myPolls.locator('.summary').filter({ hasText: created[1].title }).locator('.results-total'), '0 votes');
  // A vote on the poll I voted on: that list is live too.
  await server.api.vote(others[2].token, votedPoll.id, 2);
  await expectText(votedSummary.locator('.results-total'), '4 votes');
  await expectText(votedSummary.locator('.result.mine .result-figures'), '50% (2 votes)');
  assert.equal(navigations, navigationsBefore, 'the profile did not reload');
  watch.assertClean();
  watchOther.assertClean();
  await context.close();
  await voter.close();
});

e2e('"Load more" on the profile follows nextCursor, with the keyboard, and focus goes to the first new poll', async () => {
  const owner = await server.api.register();
  const user = await server.api.register();
  const pages = tag('pages');
  const mine = [];
  for (let i = 1; i <= 12; i++) {
    mine.push((await server.api.createPoll(user.token, { title: `Paged poll ${i} ${pages}`, options: ['A', 'B'], tags: [pages] })).title);
  }
  const voted = [];
  for (let i = 1; i <= 11; i++) {
    const poll = await server.api.createPoll(owner.token, { title: `Voted poll ${i} ${pages}`, options: ['A', 'B'], tags: [pages] });
    await server.api.vote(user.token, poll.id, i % 2);
    voted.push(poll.title);
  }
  const context = await signedInContext(browser, server, user);
  const page = await context.newPage();
  const watch = watchPage(page);
  const listRequests = [];
  page.on('request', (request) => /\/api\/users\/me\/(polls|votes)/.test(request.url()) && listRequests.push(new URL(request.url())));
  await open(page, server, '/me');
  const myPolls = profileList(page, 'My polls');
  const myVotes = profileList(page, 'Polls I voted on');
  const newestFirst = (titles) => [...titles].reverse();
  await expectTitles(myPolls, newestFirst(mine).slice(0, 10));
  await expectTitles(myVotes, newestFirst(voted).slice(0, 10));

  // Keyboard only: Tab to "Load more" of my polls, Enter.
  let reached = false;
  for (let i = 0; i < 120 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.textContent === 'Load more my polls');
  }
  assert.ok(reached, 'Tab reaches "Load more my polls"');
  await page.keyboard.press('Enter');
  await expectTitles(myPolls, newestFirst(mine));
  await page.waitForFunction((title) => document.activeElement?.textContent === title, mine[1], { timeout: kTimeout });
  assert.equal(await myPolls.getByRole('button', { name: /^Load more/ }).count(), 0, 'no more pages: the button is gone');
  // The other list's next page fails once: the button says so, keeps the focus, and a retry works.
  const failing = /\/api\/users\/me\/votes\?.*cursor=/;
  await page.route(failing, (route) =>
    route.fulfill({
      status: 503,
      contentType: 'application/json',
      body: JSON.stringify({ error: { code: 'unavailable', message: 'service temporarily unavailable' } }),
    }),
  );
  await myVotes.getByRole('button', { name: 'Load more polls I voted on' }).focus();
  await page.keyboard.press('Space');
  await expectText(myVotes.getByRole('alert'), 'Something went wrong on our side');
  const retry = myVotes.getByRole('button', { name: 'Try again loading polls I voted on' });
  await retry.waitFor({ timeout: kTimeout });
  assert.ok(await retry.evaluate((button) => button === document.activeElement), 'the focus stayed on the button');
  await expectTitles(myVotes, newestFirst(voted).slice(0, 10));
  await page.unroute(failing);
  await page.keyboard.press('Space');
  await expectTitles(myVotes, newestFirst(voted));
  await page.waitForFunction((title) => document.activeElement?.textContent === title, voted[0], { timeout: kTimeout });
  assert.equal(await page.getByRole('button', { name: /^(Load more|Try again)/ }).count(), 0);
  assert.equal(await myVotes.getByRole('alert').count(), 0, 'the error is gone');

  const seconds = listRequests.filter((url) => url.searchParams.has('cursor'));
  assert.equal(seconds.length, 3, 'one page after the first of each list, and the retried one');
  assert.equal(seconds[1].searchParams.get('cursor'), seconds[2].searchParams.get('cursor'), 'the retry asks for the same page');
  for (const url of listRequests) {
    assert.equal(url.searchParams.get('limit'), '10');
  }
  await assertAccessible(page, 'profile after Load more');
  watch.assertClean();
  await context.close();
});

e2e('voting with the keyboard only: Tab to an option, Enter or Space votes, focus stays on the results', async () => {
  const owner = await server.api.register();
  const kbd = tag('kbd');
  await server.api.createPoll(owner.token, { title: 'Keyboard poll one', options: ['Red', 'Green', 'Blue'], tags: [kbd] });
  await server.api.createPoll(owner.token, { title: 'Keyboard poll two', options: ['Cats', 'Dogs'], tags: [kbd] });
  const context = await signedInContext(browser, server, await server.api.register());
  const page = await context.newPage();
  const watch = watchPage(page);
  await open(page, server, `/?tag=${kbd}`);
  await cardOf(page, 'Keyboard poll two').waitFor();

  async function tabTo(text) {
    for (let i = 0; i < 40; i++) {
      await page.keyboard.press('Tab');
      const focused = await page.evaluate(() => ({
        text: document.activeElement?.textContent ?? '',
        tag: document.activeElement?.tagName,
        outline: getComputedStyle(document.activeElement).outlineStyle,
      }));
      if (focused.tag === 'BUTTON' && focused.text === text) {
        assert.notEqual(focused.outline, 'none', 'the focused option shows a focus ring');
        return;
      }
    }
    assert.fail(`Tab never reached the option ${text}`);
  }

  const votes = [];
  page.on('request', (request) => /\/vote$/.test(request.url()) && votes.push(request.headers()));
  await tabTo('Dogs');
  await page.keyboard.press('Enter');
  const two = cardOf(page, 'Keyboard poll two');
  await expectText(two.locator('.result.mine'), 'Dogs');
  // The card moves focus in the animation frame after it shows the results: wait for that frame.
  await page
    .waitForFunction(() => Boolean(document.activeElement?.closest('.results-wrap')), null, { timeout: kTimeout })
    .catch(() => assert.fail('focus moved to the results'));

  await tabTo('Green');
  await page.keyboard.press('Space');
  const one = cardOf(page, 'Keyboard poll one');
  await expectText(one.locator('.result.mine'), 'Green');
  await expectText(one.locator('.results-total'), '1 vote');
  assert.equal(votes.length, 2);
  for (const headers of votes) {
    assert.match(headers['idempotency-key'], /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.match(headers.authorization, /^Bearer \S+$/);
  }
  assert.notEqual(votes[0]['idempotency-key'], votes[1]['idempotency-key']);
  watch.assertClean();
  await context.close();
});

e2e('markup, RTL and emoji in a poll render as text and never run', async () => {
  const owner = await server.api.register();
  const xss = 'untrusted-text'; // fixed, so its screenshot is the same from run to run
  const title = '<script>alert(1)</script> مرحبا بالعالم 🎉 שלום';
  const options = ['<img src=x onerror=alert(1)>', '"><svg onload=alert(2)>', 'العربية 🇸🇦', 'עברית 🙂 <b>bold</b>'];
  const poll = await server.api.createPoll(owner.token, { title, options, tags: [xss] });
  const voter = await server.api.register();
  const context = await signedInContext(browser, server, voter);
  const page = await context.newPage();
  const watch = watchPage(page);

  await open(page, server, `/?tag=${xss}`);
  const card = cardOf(page, title);
  await card.waitFor({ timeout: kTimeout });
  assert.equal(await card.locator('.card-title').textContent(), title);
  for (const option of options) {
    await card.getByRole('button', { name: option, exact: true }).waitFor();
  }
  await card.getByRole('button', { name: options[0], exact: true }).click();
  await expectText(card.locator('.results-total'), '1 vote');
  assert.deepEqual(await card.locator('.result-text').evaluateAll((nodes) => nodes.map((n) => n.firstChild?.textContent)), options);
  await screenshot(page, 'untrusted-text');

  await open(page, server, `/polls/${poll.id}`);
  await cardOf(page, title).waitFor({ timeout: kTimeout });
  await open(page, server, '/me');
  await page.locator('.hot li').first().waitFor({ timeout: kTimeout });
  await expectTitles(profileList(page, 'Polls I voted on'), [title]);
  await sleep(300);
  assert.equal(await page.locator('img[src="x"], svg[onload], b, main script').count(), 0, 'no element came out of user text');
  watch.assertClean();
  await context.close();
});

e2e('the API field errors of sign-up and poll creation appear next to their fields', async () => {
  const context = await browser.newContext({ viewport: kViewports[0] });
  const page = await context.newPage();
  const watch = watchPage(page);
  await open(page, server, '/signup');
  await page.getByLabel('Username').fill('ab');
  await page.getByLabel('Email').fill('not-an-email');
  await page.getByLabel('Password').fill('short');
  await page.getByRole('button', { name: 'Sign up' }).click();
  for (const field of ['username', 'email', 'password']) {
    await page.locator(`#${field}-error`).waitFor({ timeout: kTimeout });
    assert.equal(await page.locator(`#${field}`).getAttribute('aria-invalid'), 'true');
    assert.match(await page.locator(`#${field}`).getAttribute('aria-describedby'), new RegExp(`${field}-error`));
  }
  // Focus goes to the first field to fix.
  await page.waitForFunction(() => document.activeElement?.id === 'username', null, { timeout: kTimeout });

  const taken = await server.api.register();
  await page.getByLabel('Username').fill(taken.user.username);
  await page.getByLabel('Email').fill(`other-${taken.user.email}`);
  await page.getByLabel('Password').fill('long enough password');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await expectText(page.locator('#username-error'), 'taken');
  assert.equal(await page.locator('#email-error').count(), 0);
  watch.assertClean();
  await context.close();

  const signedIn = await signedInContext(browser, server, await server.api.register());
  const create = await signedIn.newPage();
  const watchCreate = watchPage(create);
  await open(create, server, '/new');
  await create.getByLabel('Question').fill('   ');
  await create.getByLabel('Option 1').fill('Yes');
  await create.getByLabel('Option 2').fill('yes');
  await create.getByRole('button', { name: 'Add option' }).click();
  await create.getByRole('button', { name: 'Add tag' }).click();
  await create.getByLabel('Tag 1').fill('fine');
  await create.getByLabel('Tag 2').fill('Not OK!');
  await create.getByRole('button', { name: 'Publish poll' }).click();
  await create.locator('#title-error').waitFor({ timeout: kTimeout });
  for (const [input, error] of [
    ['#title', '#title-error'],
    ['#options-1', '#options-1-error'],
    ['#options-2', '#options-2-error'],
    ['#tags-1', '#tags-1-error'],
  ]) {
    await create.locator(error).waitFor({ timeout: kTimeout });
    assert.equal(await create.locator(input).getAttribute('aria-invalid'), 'true', `${input} is marked invalid`);
  }
  // Next to its own field: the error sits in the same list item as its input.
  assert.equal(await create.locator('li.list-item:has(#options-1) .field-error').count(), 1);
  assert.equal(await create.locator('li.list-item:has(#tags-0) .field-error').count(), 0);
  assert.equal(await create.locator('#options-0').getAttribute('aria-invalid'), null);
  await expectText(create.getByRole('alert'), 'Please fix the fields marked below.');
  await create.getByRole('button', { name: 'Remove option 3' }).click();
  assert.equal(await create.locator('#options-2').count(), 0, 'the third option was removed');
  assert.equal(await create.getByRole('button', { name: /^Remove option/ }).count(), 0, 'two options cannot be removed');
  watchCreate.assertClean();
  await signedIn.close();
});

e2e('a tag tapped on a card and words searched filter the feed, and the filter lives in the URL', async () => {
  const owner = await server.api.register();
  const topic = tag('topic');
  await server.api.createPoll(owner.token, { title: 'Favourite programming language for scripts?', options: ['Python', 'Perl'], tags: [topic] });
  await server.api.createPoll(owner.token, { title: 'Best pizza topping?', options: ['Basil', 'Pineapple'], tags: [topic, 'food'] });
  const context = await signedInContext(browser, server, await server.api.register());
  const page = await context.newPage();
  const watch = watchPage(page);
  await open(page, server, '/');
  await cardOf(page, 'Best pizza topping?').getByRole('link', { name: `Show polls tagged #${topic}` }).click();
  await page.getByRole('heading', { name: `Polls tagged #${topic}` }).waitFor({ timeout: kTimeout });
  assert.equal(new URL(page.url()).search, `?tag=${topic}`);
  await cardOf(page, 'Favourite programming language for scripts?').waitFor({ timeout: kTimeout });
  assert.equal(await page.locator('article.card').count(), 2);

  await page.getByRole('searchbox', { name: 'Search polls' }).fill('languages');
  await page.getByRole('button', { name: 'Search', exact: true }).click();
  await cardOf(page, 'Best pizza topping?').waitFor({ state: 'detached', timeout: kTimeout });
  // The list is replaced by the search's page: wait for it before counting.
  await cardOf(page, 'Favourite programming language for scripts?').waitFor({ timeout: kTimeout });
  assert.equal(new URL(page.url()).search, `?tag=${topic}&q=languages`);
  assert.equal(await page.locator('article.card').count(), 1, 'word stems match: languages finds language');

  await page.reload();
  await cardOf(page, 'Favourite programming language for scripts?').waitFor({ timeout: kTimeout });
  assert.equal(await page.locator('article.card').count(), 1, 'the filter survives a reload');
  assert.equal(await page.getByRole('searchbox', { name: 'Search polls' }).inputValue(), 'languages');

  await page.getByRole('button', { name: `Remove filter #${topic}` }).click();
  await page.getByRole('heading', { name: 'Polls matching “languages”' }).waitFor({ timeout: kTimeout });
  assert.equal(new URL(page.url()).search, '?q=languages');
  await page.goBack();
  await page.getByRole('heading', { name: `#${topic} polls matching “languages”` }).waitFor({ timeout: kTimeout });
  watch.assertClean();
  await context.close();
});

e2e('30 polls voted on and 30 skipped never come back, also after a reload', async () => {
  const owner = await server.api.register();
  const voted = tag('bulk-vote');
  const skipped = tag('bulk-skip');
  for (let i = 1; i <= 30; i++) {
    await server.api.createPoll(owner.token, { title: `Vote poll ${i} of 30`, options: ['Yes', 'No', 'Maybe'], tags: [voted] });
    await server.api.createPoll(owner.token, { title: `Skip poll ${i} of 30`, options: ['A', 'B'], tags: [skipped] });
  }
  const context = await signedInContext(browser, server, await server.api.register());
  const page = await context.newPage();
  const watch = watchPage(page);

  await open(page, server, `/?tag=${voted}`);
  const seen = new Set();
  for (let i = 0; i < 30; i++) {
    const next = page.locator('article.card:has(.options)').first();
    if ((await next.count()) === 0) {
      await page.locator('.more').scrollIntoViewIfNeeded({ timeout: kTimeout });
    }
    await next.waitFor({ timeout: kTimeout });
    const id = await next.getAttribute('data-poll-id');
    assert.ok(!seen.has(id), `poll ${id} shown twice`);
    seen.add(id);
    await next.getByRole('button', { name: 'Maybe', exact: true }).click();
    await page.locator(`article.card[data-poll-id="${id}"] .results-total`).filter({ hasText: /\d+ votes?/ }).waitFor({ timeout: kTimeout });
  }
  await page.getByText('You have seen every poll that matches').waitFor({ timeout: kTimeout });
  await page.reload();
  await page.getByRole('heading', { name: 'No polls match' }).waitFor({ timeout: kTimeout });
  assert.equal(await page.locator('article.card').count(), 0);

  await open(page, server, `/?tag=${skipped}`);
  let skipsAnswered = 0;
  page.on('response', (response) => /\/skip$/.test(response.url()) && response.ok() && skipsAnswered++);
  for (let i = 0; i < 30; i++) {
    const first = page.locator('article.card').first();
    await first.waitFor({ timeout: kTimeout });
    const id = await first.getAttribute('data-poll-id');
    assert.ok(!seen.has(id), `poll ${id} shown twice`);
    seen.add(id);
    await first.getByRole('button', { name: /^Skip/ }).click();
    await page.locator(`article.card[data-poll-id="${id}"]`).waitFor({ state: 'detached', timeout: kTimeout });
  }
  await page.getByRole('heading', { name: 'No polls match' }).waitFor({ timeout: kTimeout });
  for (let i = 0; skipsAnswered < 30 && i < 100; i++) {
    await sleep(50);
  }
  assert.equal(skipsAnswered, 30, 'every skip was answered 200');
  await page.reload();
  await page.getByRole('heading', { name: 'No polls match' }).waitFor({ timeout: kTimeout });

  await open(page, server, '/');
  await page.locator('article.card').first().waitFor({ timeout: kTimeout });
  const shown = await page.locator('article.card').evaluateAll((cards) => cards.map((c) => c.getAttribute('data-poll-id')));
  assert.deepEqual(
    shown.filter((id) => seen.has(id)),
    [],
    'no answered poll in the unfiltered feed',
  );
  watch.assertClean();
  await context.close();
});

e2e('a killed WebSocket reconnects, and counts that changed while offline appear', async () => {
  const owner = await server.api.register();
  const live = tag('live');
  const poll = await server.api.createPoll(owner.token, { title: 'Reconnect poll', options: ['Up', 'Down'], tags: [live] });
  const others = [];
  for (let i = 0; i < 3; i++) {
    others.push(await server.api.register());
  }
  const context = await signedInContext(browser, server, await server.api.register());
  const sockets = [];
  await context.routeWebSocket(/\/api\/ws/, (ws) => {
    const upstream = ws.connectToServer();
    sockets.push({ ws, upstream });
  });
  const page = await context.newPage();
  const watch = watchPage(page);
  await open(page, server, `/?tag=${live}`);
  const card = cardOf(page, 'Reconnect poll');
  await card.getByRole('button', { name: 'Up', exact: true }).click();
  await expectText(card.locator('.results-total'), '1 vote');
  const liveNow = () => page.locator('.live-status.live').waitFor({ timeout: kTimeout });
  await liveNow();

  // The server side goes away: the client notices, reconnects and gets pushes again.
  const before = sockets.length;
  sockets.at(-1).upstream.close();
  sockets.at(-1).ws.close();
  for (let i = 0; sockets.length === before && i < 200; i++) {
    await sleep(50);
  }
  assert.ok(sockets.length > before, 'the client opened a new WebSocket');
  await liveNow();
  await server.api.vote(others[0].token, poll.id, 1);
  await expectText(card.locator('.results-total'), '2 votes');

  // Offline: no updates; back online: the missed counts are fetched.
  await context.setOffline(true);
  await page.locator('.live-status.offline').waitFor({ timeout: kTimeout });
  await page.getByText('You are offline.').waitFor({ timeout: kTimeout });
  await server.api.vote(others[1].token, poll.id, 1);
  await server.api.vote(others[2].token, poll.id, 0);
  await sleep(1000);
  assert.equal(await card.locator('.results-total').textContent(), '2 votes', 'no update while offline');
  await context.setOffline(false);
  await liveNow();
  await expectText(card.locator('.results-total'), '4 votes');
  await expectText(card.locator('.result', { hasText: 'Up' }), '50%');

  // A server error on the feed shows a retry, and the retry works.
  await page.route(/\/api\/polls\?/, (route) =>
    route.fulfill({
      status: 503,
      contentType: 'application/json',
      body: JSON.stringify({ error: { code: 'unavailable', message: 'service temporarily unavailable' } }),
    }),
  );
  await page.reload();
  await page.getByText('Something went wrong on our side').waitFor({ timeout: kTimeout });
  await page.unroute(/\/api\/polls\?/);
  await page.getByRole('button', { name: 'Try again' }).click();
  await page.getByRole('heading', { name: 'No polls match' }).waitFor({ timeout: kTimeout });
  watch.assertClean();
  await context.close();
});

e2e('the daily vote limit and a 429 show their states, and the refused vote is rolled back', async () => {
  const limited = await startServer(database, { VOTE_VOTES_DAILY_LIMIT: '3', VOTE_RATELIMIT_USER_PER_MINUTE: '40' });
  try {
    const owner = await limited.api.register();
    const daily = tag('daily');
    const polls = [];
    for (let i = 1; i <= 4; i++) {
      polls.push(await limited.api.createPoll(owner.token, { title: `Daily poll ${i}`, options: ['One', 'Two'], tags: [daily] }));
    }
    const voter = await limited.api.register();
    for (const poll of polls.slice(0, 3)) {
      await limited.api.vote(voter.token, poll.id, 0);
    }
    const context = await signedInContext(browser, limited, voter);
    const page = await context.newPage();
    const watch = watchPage(page);
    await open(page, limited, `/?tag=${daily}`);
    const card = cardOf(page, 'Daily poll 4');
    await card.getByRole('button', { name: 'Two', exact: true }).click();
    await page.getByText('Daily vote limit reached.').waitFor({ timeout: kTimeout });
    await expectText(card.locator('.card-error'), "Your vote was not saved. You have used all of today's votes.");
    assert.match(await page.locator('.notice', { hasText: 'Daily vote limit' }).textContent(), /opens again in \d+ (h|min|s)/);
    assert.equal(await card.locator('.results').count(), 0, 'the optimistic vote was rolled back');
    await card.getByRole('button', { name: 'Two', exact: true }).waitFor();
    await card.getByRole('button', { name: /^Skip/ }).click();
    await page.getByRole('heading', { name: 'No polls match' }).waitFor({ timeout: kTimeout });
    await open(page, limited, '/me');
    await page.locator('.facts div', { hasText: 'Votes left today' }).locator('dd', { hasText: /^0$/ }).waitFor({ timeout: kTimeout });
    watch.assertClean();
    await context.close();

    const rate = tag('rate');
    await limited.api.createPoll(owner.token, { title: 'Rate poll', options: ['Fast', 'Slow'], tags: [rate] });
    const busy = await limited.api.register();
    const busyContext = await signedInContext(browser, limited, busy);
    const busyPage = await busyContext.newPage();
    const watchBusy = watchPage(busyPage);
    await open(busyPage, limited, `/?tag=${rate}`);
    const rateCard = cardOf(busyPage, 'Rate poll');
    await rateCard.waitFor({ timeout: kTimeout });
    let answer;
    for (let i = 0; i < 60; i++) {
      answer = await limited.api.call('GET', '/api/users/me', { token: busy.token });
      if (answer.status === 429) {
        break;
      }
    }
    assert.equal(answer.status, 429, 'the per-minute limit was reached');
    await rateCard.getByRole('button', { name: 'Fast', exact: true }).click();
    await busyPage.getByText('Too many requests.').first().waitFor({ timeout: kTimeout });
    assert.match(await busyPage.locator('.notice', { hasText: 'Too many requests' }).textContent(), /wait \d+ (s|min)/);
    await expectText(rateCard.locator('.card-error'), 'Your vote was not saved. Too many requests.');
    assert.equal(await rateCard.locator('.results').count(), 0, 'the optimistic vote was rolled back');
    watchBusy.assertClean();
    await busyContext.close();
  } finally {
    await limited.stop();
  }
});
