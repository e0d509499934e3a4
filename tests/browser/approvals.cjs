'use strict';
// Drives the approver page, /ui/approvals, in Debian's headless chromium
// through playwright-core (never a downloaded browser), the way an approver
// would: sign in through the identity provider, find the pending call,
// approve one request and deny another with comments, and look at the
// history. It reports what it saw as JSON lines on stdout; the Rust test
// (tests/integration/approvals.rs) makes the assertions and drives the
// agent's side.
//
//   NODE_PATH="$(bash tests/browser/install.sh | tail -n1)" \
//     node tests/browser/approvals.cjs '{"base": "http://127.0.0.1:PORT", ...}'
//
// Options (one JSON argument):
//   base         the gateway's URL
//   first        text that only the first pending request's card shows
//   second       text of a request that appears while the page is open
//                (the test makes it after this prints {"event":"loaded"})
//   approve      comment for approving `first`
//   deny         comment for denying `second`
//   screenshots  directory for approvals-pending.png and approvals-decided.png
//   chromium     the browser (default /usr/bin/chromium)
//
// `loaded` carries axe-core's WCAG A/AA violations (`accessibility`).
//
// Lines on stdout: {"event":"loaded",...}, {"event":"live",...},
// {"event":"decided",...}, {"event":"done"}; on failure {"event":"error",
// "message":...} and exit 1.

const path = require('node:path');

const WAIT_MS = 20000;
// The page, for what it showed when something failed.
let current = null;

function say(event, fields) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

async function main() {
  const opts = JSON.parse(process.argv[2] || '{}');
  for (const key of ['base', 'first', 'second', 'approve', 'deny', 'screenshots']) {
    if (typeof opts[key] !== 'string') throw new Error(`option \`${key}\` (a string) is missing`);
  }
  let chromium;
  try {
    ({ chromium } = require('playwright-core'));
  } catch {
    throw new Error('playwright-core not found: run `bash tests/browser/install.sh` and set NODE_PATH to the node_modules it prints');
  }
  const browser = await chromium.launch({
    executablePath: opts.chromium || '/usr/bin/chromium',
    headless: true,
    // As the machine's notes say: without these, chromium keeps trying to
    // reach Google's hosts, which this closed network refuses.
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
    const page = await context.newPage();
    current = page;
    const dialogs = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      d.dismiss().catch(() => {});
    });
    const consoleErrors = [];
    page.on('response', (r) => {
      if (r.status() >= 400) consoleErrors.push(`${r.status()} ${r.url()}`);
    });
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });

    // 1. Sign in: the page sends us to the IdP and back.
    const visited = [];
    page.on('request', (r) => {
      if (r.isNavigationRequest()) visited.push(r.url());
    });
    await page.goto(`${opts.base}/ui/approvals`);
    await page.waitForSelector('#pending', { timeout: WAIT_MS });
    const first = page.locator('article.request', { hasText: opts.first });
    await first.waitFor({ timeout: WAIT_MS });
    // A reload would clear this; the live update must not need one.
    await page.evaluate(() => { window.__sameDocument = true; });
    const facts = await page.evaluate((marker) => {
      const card = Array.from(document.querySelectorAll('article.request'))
        .find((a) => a.textContent.includes(marker));
      const args = card.querySelector('pre.args');
      return {
        url: location.href,
        title: document.title,
        lang: document.documentElement.lang,
        who: document.querySelector('header .who').textContent,
        cards: document.querySelectorAll('article.request').length,
        card_text: card.innerText,
        args_text: args.textContent,
        args_children: args.children.length,
        // What an injection would have made.
        injected: {
          img: document.querySelectorAll('img').length,
          iframe: document.querySelectorAll('iframe').length,
          scripts: Array.from(document.querySelectorAll('script')).map((s) => s.getAttribute('src')),
          markup_in_card: card.querySelectorAll('b, strong, em, i, a[href^="javascript"], img, script, iframe, table').length,
          pwned: window.__pwned === undefined ? null : window.__pwned,
        },
        unlabelled: Array.from(document.querySelectorAll('textarea, input:not([type=hidden]), select'))
          .filter((e) => e.labels.length === 0).length,
        time_left: card.querySelector('time.left') && card.querySelector('time.left').textContent,
      };
    }, opts.first);
    // Accessibility: axe-core's WCAG 2.x A/AA rules on the page as shown
    // (evaluated over the DevTools protocol, which the page's CSP does not
    // govern; the page itself runs no script but its own).
    const axeSource = require('node:fs').readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
    await page.evaluate(axeSource);
    const accessibility = await page.evaluate(async () => {
      const r = await window.axe.run(document, {
        runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
      });
      return {
        rules_passed: r.passes.length,
        violations: r.violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`),
      };
    });
    say('loaded', { visited, ...facts, accessibility });
    await page.screenshot({ path: path.join(opts.screenshots, 'approvals-pending.png'), fullPage: true });

    // 2. A request made while the page is open appears without a reload.
    const second = page.locator('article.request', { hasText: opts.second });
    await second.waitFor({ timeout: WAIT_MS });
    say('live', {
      same_document: await page.evaluate(() => window.__sameDocument === true),
      cards: await page.locator('article.request').count(),
    });

    // 3. Approve the first, with a comment.
    await first.locator('textarea').fill(opts.approve);
    await Promise.all([
      page.waitForURL(/done=approved/, { timeout: WAIT_MS }),
      first.getByRole('button', { name: 'Approve' }).click(),
    ]);
    const approvedFlash = await page.locator('.flash').innerText();

    // 4. Deny the second, with a comment.
    const secondAgain = page.locator('article.request', { hasText: opts.second });
    await secondAgain.locator('textarea').fill(opts.deny);
    await Promise.all([
      page.waitForURL(/done=denied/, { timeout: WAIT_MS }),
      secondAgain.getByRole('button', { name: 'Deny' }).click(),
    ]);
    const deniedFlash = await page.locator('.flash').innerText();
    const history = await page.locator('#history tbody tr').allInnerTexts();
    await page.screenshot({ path: path.join(opts.screenshots, 'approvals-decided.png'), fullPage: true });
    say('decided', {
      approved_flash: approvedFlash,
      denied_flash: deniedFlash,
      pending_left: await page.locator('#pending article.request').count(),
      history,
      dialogs,
      console_errors: consoleErrors,
    });
    say('done', {});
  } catch (e) {
    let shown = '';
    try {
      shown = `\npage ${current.url()} shows:\n${await current.locator('main').innerText({ timeout: 2000 })}`;
    } catch {}
    throw new Error(String(e && e.stack ? e.stack : e) + shown);
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  say('error', { message: String(e && e.message ? e.message : e) });
  process.exit(1);
});
