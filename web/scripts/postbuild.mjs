// After `vite build`: refuse inline script or style in index.html (the server's CSP forbids
// them), write a .gz and a .br copy next to every file in dist/ for the server to send as is,
// and fail when the gzipped JS+CSS is over the size budget.
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const kBudgetBytes = 100 * 1024;
const dist = fileURLToPath(new URL('../dist/', import.meta.url));

async function files(dir) {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      out.push(...(await files(path)));
    } else if (!/\.(gz|br)$/.test(entry.name)) {
      out.push(path);
    }
  }
  return out;
}

function checkNoInline(html) {
  const problems = [];
  for (const [tag] of html.matchAll(/<script\b[^>]*>/gi)) {
    if (!/\bsrc\s*=/.test(tag)) {
      problems.push(`inline script: ${tag}`);
    }
  }
  if (/<style\b/i.test(html)) {
    problems.push('a <style> element');
  }
  if (/\sstyle\s*=/i.test(html)) {
    problems.push('a style="..." attribute');
  }
  if (/\son[a-z]+\s*=/i.test(html)) {
    problems.push('an inline event handler');
  }
  return problems;
}

const html = await readFile(join(dist, 'index.html'), 'utf8');
const problems = checkNoInline(html);
if (problems.length > 0) {
  console.error(`postbuild: dist/index.html breaks the Content-Security-Policy: ${problems.join('; ')}`);
  process.exit(1);
}

let budgeted = 0;
const rows = [];
for (const path of (await files(dist)).sort()) {
  const raw = await readFile(path);
  const gz = gzipSync(raw, { level: 9 });
  const br = brotliCompressSync(raw, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: 11,
      [constants.BROTLI_PARAM_SIZE_HINT]: raw.length,
    },
  });
  await writeFile(`${path}.gz`, gz);
  await writeFile(`${path}.br`, br);
  if (/\.(js|css)$/.test(path)) {
    budgeted += gz.length;
  }
  rows.push([relative(dist, path), raw.length, gz.length, br.length]);
}

const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
for (const [name, raw, gz, br] of rows) {
  console.log(`  ${name.padEnd(40)} ${kb(raw).padStart(9)}  gzip ${kb(gz).padStart(8)}  br ${kb(br).padStart(8)}`);
}
console.log(`postbuild: JS+CSS gzipped ${kb(budgeted)} of a ${kb(kBudgetBytes)} budget`);
if (budgeted > kBudgetBytes) {
  console.error(`postbuild: over budget by ${kb(budgeted - kBudgetBytes)}`);
  process.exit(1);
}
await stat(join(dist, 'index.html'));
