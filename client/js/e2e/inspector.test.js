// The inspector in a real headless Chromium (Debian's, never a downloaded build):
// it lists a session, shows an appended event live, shows "reconnecting" while
// the daemon restarts, then resumes with no duplicate and no gap, and marks the
// gap when a new writer takes the session over. It saves a
// screenshot under artifacts/ and prints its path. Run with `npm run test:e2e`
// (scripts/test-e2e.sh installs what it needs).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { Daemon } from '../test/daemon.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CHROMIUM = process.env.LIVEREPLAY_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'artifacts');
const SESSION = 'e2e:session-1';
const INC = 'e2e-writer';
const WINDOW = [{ step: 'plan' }, { step: 'call tool', tool: 'search' }, { step: 'answer', text: 'done' }];

test('the inspector lists a session, shows events live, and rides out a daemon restart', async () => {
  const daemon = new Daemon(['--startup-grace-s', '10']);
  await daemon.start();
  const profile = mkdtempSync(join(tmpdir(), 'livereplay-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 800 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const pageErrors = [];
  const cspViolations = [];
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (err) => pageErrors.push(String(err)));
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
    });
    page.setDefaultTimeout(30_000);

    await daemon.append(SESSION, WINDOW.slice(0, 1), { incarnation: INC });
    await page.goto(`${daemon.httpUrl}/`);
    const row = page.locator(`#sessions tr[data-session-id="${SESSION}"]`);
    await row.waitFor();
    assert.equal(await row.locator('td').nth(3).textContent(), '1', 'retained events');

    await row.locator('a').click();
    await page.locator('#status[data-status="caught_up"]').waitFor();
    await page.locator('#log li.event[data-position="1"]').waitFor();
    assert.match(await page.locator('#cursor').textContent(), new RegExp(`^lashsc2:${INC}:1:1:`));

    await daemon.append(SESSION, WINDOW.slice(1, 2), { incarnation: INC, firstPosition: 2 });
    await page.locator('#log li.event[data-position="2"]').waitFor();

    await daemon.kill();
    await page.locator('#status[data-status="reconnecting"]').waitFor();
    await page.locator('#daemon[data-state="down"]').waitFor();

    await daemon.start();
    // The writer re-sends its window to the restarted daemon, with one new event.
    await daemon.append(SESSION, WINDOW, { incarnation: INC });
    await page.locator('#log li.event[data-position="3"]').waitFor();
    await page.locator('#status[data-status="caught_up"]').waitFor();
    // The list follows too: three retained events, and this page as the session's reader.
    await page.locator(`#sessions tr[data-session-id="${SESSION}"] td:nth-child(4)`).filter({ hasText: /^3$/ }).waitFor();
    await page.locator(`#sessions tr[data-session-id="${SESSION}"] td:nth-child(6)`).filter({ hasText: /^1$/ }).waitFor();

    const positions = await page.locator('#log li.event').evaluateAll((rows) => rows.map((r) => r.dataset.position));
    assert.deepEqual(positions, ['1', '2', '3'], 'each event exactly once, in order');
    assert.equal(await page.locator('#log li.gap').count(), 0, 'no gap: the window was restored');
    assert.match(await page.locator('#log li.event[data-position="3"] .payload').textContent(), /"answer"/);
    assert.match(await page.locator('#cursor').textContent(), new RegExp(`^lashsc2:${INC}:1:3:`));
    assert.equal(await page.locator('#count-reconnects').textContent(), '1');
    assert.equal(await page.locator('#log li.marker.trouble').count(), 1, 'one loss, one note');

    // A new writer takes the session over: the page marks the gap, then goes on.
    const taken = await daemon.append(SESSION, [{ step: 'new run' }], { incarnation: 'e2e-writer-2' });
    const gap = page.locator('#log li.gap[data-detail="incarnation_changed"]');
    await gap.waitFor();
    assert.match(await gap.textContent(), /GAP · unavailable · incarnation_changed/);
    await daemon.append(SESSION, [{ step: 'after the gap' }], { incarnation: 'e2e-writer-2', firstPosition: 2 });
    await page.locator('#log li.event[data-incarnation="e2e-writer-2"][data-position="2"]').waitFor();
    assert.equal(await page.locator('#log li.event[data-incarnation="e2e-writer-2"]').count(), 1,
      'events before the gap\'s resume point are not shown');
    assert.equal(await page.locator('#count-gaps').textContent(), '1');
    assert.notEqual(await page.locator('#cursor').textContent(), taken.tail_cursor, 'the cursor moved on');

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, 'inspector.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(cspViolations, []);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    await daemon.stop();
  }
});
