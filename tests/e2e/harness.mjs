// The e2e harness: a fresh database, real `vote serve` processes serving web/dist, one headless
// Chromium, and a small API client to create data quickly.
//
// Packages come from web/node_modules (one lockfile, web/package-lock.json), resolved relative
// to web/package.json: Node's ESM loader ignores NODE_PATH, createRequire does not need it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import net from 'node:net';

export const repoRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const require = createRequire(join(repoRoot, 'web/package.json'));
const { chromium } = require('playwright-core');
const { AxeBuilder } = require('@axe-core/playwright');
const pg = require('pg');
export { AxeBuilder };

const kChromium = process.env.VOTE_E2E_CHROMIUM ?? '/usr/bin/chromium';
const kStartTimeoutMs = 60_000;
export const kSessionKey = 'vote.session';

const workDir = mkdtempSync(join(tmpdir(), 'vote-e2e-'));
export const logDir = process.env.VOTE_E2E_LOG_DIR ?? workDir;

function voteBin() {
  const bin = resolve(repoRoot, process.env.VOTE_BIN ?? 'build/debug-asan/vote');
  assert.ok(existsSync(bin), `VOTE_BIN ${bin} does not exist: build the server first (make build-test)`);
  return bin;
}

function postgresConfig(database) {
  return {
    host: process.env.VOTE_POSTGRES_HOST ?? '127.0.0.1',
    port: Number(process.env.VOTE_POSTGRES_PORT ?? 5432),
    user: process.env.VOTE_POSTGRES_USER ?? 'postgres',
    password: process.env.VOTE_POSTGRES_PASSWORD ?? 'postgres',
    database,
  };
}

async function admin(sql) {
  const client = new pg.Client(postgresConfig('postgres'));
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

function run(cmd, args, env, logName) {
  return new Promise((resolvePromise, reject) => {
    const log = createWriteStream(join(logDir, logName));
    const child = spawn(cmd, args, { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pipe(log);
    child.stderr.pipe(log);
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolvePromise() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}; see ${join(logDir, logName)}`)),
    );
  });
}

/** A database of this run's own, migrated; `drop()` removes it. */
export async function createDatabase() {
  const name = `vote_e2e_${process.pid}`;
  await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin(`CREATE DATABASE ${name}`);
  await run(voteBin(), ['migrate', 'up', '--config', 'config/config.yaml'], { ...process.env, VOTE_POSTGRES_DBNAME: name }, 'migrate.log');
  return {
    name,
    drop: () => admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

/**
 * Empties the Redis database the servers use (VOTE_REDIS_DB, 8 by default): poll ids restart at 1
 * in a fresh PostgreSQL database, so cached stats of an earlier run would show as this run's.
 */
export function flushRedis() {
  const db = process.env.VOTE_REDIS_DB ?? '8';
  const password = process.env.VOTE_REDIS_PASSWORD ?? '';
  const command = (...args) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
  const commands = [...(password ? [command('AUTH', password)] : []), command('SELECT', db), command('FLUSHDB')];
  return new Promise((resolvePromise, reject) => {
    const socket = net.connect(Number(process.env.VOTE_REDIS_PORT ?? 6379), process.env.VOTE_REDIS_HOST ?? '127.0.0.1');
    let replies = '';
    socket.setTimeout(5000, () => socket.destroy(new Error('redis did not answer')));
    socket.on('connect', () => socket.write(commands.join('')));
    socket.on('data', (chunk) => {
      replies += chunk.toString();
      const lines = replies.split('\r\n').filter(Boolean);
      const failed = lines.find((line) => line.startsWith('-'));
      if (failed) {
        socket.destroy();
        reject(new Error(`redis: ${failed}`));
      } else if (lines.length >= commands.length) {
        socket.end();
        resolvePromise();
      }
    });
    socket.on('error', reject);
  });
}

let serverCount = 0;

/** `vote serve` on a free port with web/dist as its web root; `stop()` asserts a clean exit. */
export async function startServer(database, extraEnv = {}) {
  const id = ++serverCount;
  const portFile = join(workDir, `port-${id}`);
  const env = {
    ...process.env,
    VOTE_SERVER_PORT: '0',
    VOTE_SERVER_HOST: '127.0.0.1',
    VOTE_SERVER_PORT_FILE: portFile,
    VOTE_SERVER_ENV: 'test',
    VOTE_SERVER_WEB_ROOT: join(repoRoot, 'web/dist'),
    VOTE_AUTH_HASH_OPSLIMIT: '1',
    VOTE_AUTH_HASH_MEMLIMIT: '8192',
    VOTE_RATELIMIT_USER_PER_MINUTE: '100000',
    VOTE_RATELIMIT_IP_PER_SECOND: '100000',
    VOTE_REDIS_DB: process.env.VOTE_REDIS_DB ?? '8',
    VOTE_POSTGRES_DBNAME: database.name,
    ...extraEnv,
  };
  const logPath = join(logDir, `server-${id}.log`);
  const log = createWriteStream(logPath);
  const child = spawn(voteBin(), ['serve', '--config', 'config/config.yaml'], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  const exited = new Promise((resolveExit) => child.on('exit', (code, signal) => resolveExit({ code, signal })));
  let done = false;
  exited.then(() => {
    done = true;
  });

  const deadline = Date.now() + kStartTimeoutMs;
  let port = 0;
  while (!port) {
    assert.ok(!done, `vote serve exited during start-up; see ${logPath}`);
    assert.ok(Date.now() < deadline, `vote serve wrote no port file in time; see ${logPath}`);
    if (existsSync(portFile)) {
      port = Number(readFileSync(portFile, 'utf8').trim());
    }
    if (!port) {
      await sleep(50);
    }
  }
  const url = `http://127.0.0.1:${port}`;
  for (;;) {
    assert.ok(!done, `vote serve exited during start-up; see ${logPath}`);
    assert.ok(Date.now() < deadline, `GET /healthz did not answer 200 in time; see ${logPath}`);
    const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (ok) {
      break;
    }
    await sleep(50);
  }

  return {
    url,
    logPath,
    api: apiClient(url),
    async stop() {
      if (!done) {
        child.kill('SIGTERM');
      }
      const { code, signal } = await exited;
      assert.equal(code, 0, `vote serve exited with ${code ?? signal} after SIGTERM; see ${logPath}`);
    },
  };
}

export async function launchBrowser() {
  assert.ok(existsSync(kChromium), `${kChromium} is missing: apt-get install -y chromium`);
  // launch() gives the browser a fresh temporary --user-data-dir of its own (and removes it on
  // close); Playwright refuses the flag in `args`.
  return chromium.launch({
    executablePath: kChromium,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

let userCount = 0;

export function uniqueName(prefix = 'u') {
  userCount += 1;
  return `${prefix}${process.pid % 100000}_${userCount}_${Math.random().toString(36).slice(2, 6)}`.slice(0, 32);
}

/** The HTTP API, for setting up what a test is not about. */
export function apiClient(base) {
  async function call(method, path, { token, body, headers = {} } = {}) {
    const response = await fetch(`${base}${path}`, {
      method,
      headers: {
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        ...(token ? { Authorization: `Bearer ${token}` } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : null };
  }
  async function ok(method, path, options, expected = [200, 201]) {
    const answer = await call(method, path, options);
    assert.ok(expected.includes(answer.status), `${method} ${path}: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body;
  }
  return {
    call,
    async register(name = uniqueName()) {
      return ok('POST', '/api/auth/register', {
        body: { username: name, email: `${name.toLowerCase()}@example.com`, password: 'correct horse battery' },
      });
    },
    createPoll: (token, poll) => ok('POST', '/api/polls', { token, body: poll }),
    vote: (token, id, optionIndex) => ok('POST', `/api/polls/${id}/vote`, { token, body: { optionIndex } }),
    skip: (token, id) => ok('POST', `/api/polls/${id}/skip`, { token, body: {} }),
    feed: (token, query = '') => ok('GET', `/api/polls${query}`, { token }),
  };
}

/** A browser context already signed in as `session` (what the app keeps in localStorage). */
export async function signedInContext(browser, server, session, options = {}) {
  return browser.newContext({
    viewport: { width: 390, height: 844 },
    ...options,
    storageState: {
      cookies: [],
      origins: [{ origin: server.url, localStorage: [{ name: kSessionKey, value: JSON.stringify(session) }] }],
    },
  });
}

/**
 * Every page of a test goes through this: it fails the test on a page error, a dialog (an
 * injected alert() would open one) or a Content-Security-Policy violation.
 */
export function watchPage(page) {
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('dialog', (dialog) => {
    problems.push(`dialog opened: ${dialog.type()} ${dialog.message()}`);
    void dialog.dismiss().catch(() => undefined);
  });
  page.on('console', (message) => {
    if (/Content.Security.Policy|Refused to (execute|apply|load)/i.test(message.text())) {
      problems.push(`CSP: ${message.text()}`);
    }
  });
  return {
    problems,
    assertClean() {
      assert.deepEqual(problems, [], problems.join('\n'));
    },
  };
}

export function cleanupWorkDir() {
  if (!process.env.VOTE_E2E_LOG_DIR) {
    rmSync(workDir, { recursive: true, force: true });
  }
}
