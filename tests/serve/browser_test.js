// Browser test of the `imcap serve` page in Debian's headless Chromium, driven
// by playwright-core. Usage: node browser_test.js BASE_URL OUT_DIR PHOTO PHOTO2
// Uploads a photo, waits for its caption (checked against the API's answer for
// the same photo), presses "Speak" (the WAV must be fetched and play), checks
// keyboard access and labels, the attention map on hover (with a response
// carrying attention, injected by intercepting /v1/caption), and takes
// screenshots at 1400 and 400 px into OUT_DIR. Prints "N passed, N failed".
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const [base, outDir, photo, photo2] = process.argv.slice(2);
let passed = 0, failed = 0;
function check(name, cond, detail) {
  if (cond) { passed++; console.log('ok   ' + name); } else { failed++; console.log('FAIL ' + name + ' ' + (detail || '')); }
}

async function main() {
  fs.mkdirSync(outDir, { recursive: true });
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run',
           '--autoplay-policy=no-user-gesture-required'],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
    const page = await context.newPage();
    const external = [], consoleErrors = [];
    page.on('request', r => { const u = r.url(); if (!u.startsWith(base) && !u.startsWith('blob:' + base) && !u.startsWith('data:')) external.push(u); });
    page.on('console', m => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', e => consoleErrors.push(String(e)));
    // Record what the page's fetches of /v1/speech return.
    await page.addInitScript(() => {
      const orig = window.fetch;
      window.__speech = [];
      window.fetch = async (...args) => {
        const r = await orig(...args);
        if (String(args[0]).includes('/v1/speech')) {
          const b = new Uint8Array(await r.clone().arrayBuffer());
          window.__speech.push({ status: r.status, type: r.headers.get('content-type'), bytes: b.length,
                                 magic: String.fromCharCode(...b.slice(0, 4)) });
        }
        return r;
      };
    });
    await page.goto(base + '/');
    check('page loads with its title', (await page.title()).startsWith('imcap'));
    await page.waitForFunction(() => !document.querySelector('#model').textContent.startsWith('Loading'));
    check('model line filled from /v1/model', /vocabulary \d+ words/.test(await page.textContent('#model')),
          await page.textContent('#model'));

    // keyboard and labels
    await page.keyboard.press('Tab');
    check('Tab reaches the file chooser first', await page.evaluate(() => document.activeElement.id === 'files'));
    check('the file chooser has a label and a description', await page.evaluate(() => {
      const el = document.querySelector('#files');
      return el.labels.length === 1 && el.labels[0].textContent.includes('Choose photos') &&
             document.querySelector('#form').getAttribute('aria-describedby') === 'drop-help';
    }));
    check('the number inputs are labelled', await page.evaluate(() =>
      ['beam', 'n_best'].every(id => document.getElementById(id).labels.length === 1)));

    // upload -> caption, same as the API
    const api = await (await fetch(base + '/v1/caption?n_best=3', {
      method: 'POST', headers: { 'Content-Type': 'image/jpeg' }, body: fs.readFileSync(photo) })).json();
    await page.setInputFiles('#files', photo);
    await page.waitForSelector('.card[data-done]', { timeout: 60000 });
    const card = page.locator('.card').first();
    check('the photo is captioned', (await card.getAttribute('data-done')) === '1');
    const caption = (await card.locator('.caption').textContent()).trim();
    check('the caption shown is the API\'s caption', caption === api.caption, `${caption} vs ${api.caption}`);
    check('the photo\'s alt text is the caption', (await card.locator('img').getAttribute('alt')) === api.caption);
    check('3 alternatives with scores', (await card.locator('.alts li').count()) === 3 &&
          /score -?\d/.test(await card.locator('.alts').textContent()));
    check('timings shown', /encode [\d.]+ ms/.test(await card.locator('.timings').textContent()));
    const speak = card.locator('button.speak');
    check('speak and copy buttons have accessible names',
          /Speak the caption of/.test(await speak.getAttribute('aria-label')) &&
          /Copy the caption of .* as alt text/.test(await card.locator('button.copy').getAttribute('aria-label')));
    await page.screenshot({ path: path.join(outDir, 'serve-1400.png'), fullPage: true });

    // speak: the WAV is fetched and plays
    await speak.focus();
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => window.__speech.length > 0, null, { timeout: 30000 });
    const sp = (await page.evaluate(() => window.__speech))[0];
    check('speak (pressed with Enter) fetches audio/wav from /v1/speech',
          sp.status === 200 && sp.type === 'audio/wav' && sp.magic === 'RIFF' && sp.bytes > 10000, JSON.stringify(sp));
    let played = false;
    try {
      await page.waitForFunction(() => {
        const b = document.querySelector('.card button.speak');
        return b.dataset.state === 'playing' || b.dataset.state === 'ended';
      }, null, { timeout: 20000 });
      played = await page.evaluate(() => {
        const c = document.querySelector('.card');
        return !!c.audio && c.audio.duration > 0.3 && (c.audio.currentTime > 0 || c.audio.ended);
      });
    } catch (e) { played = false; }
    check('the audio plays (playing event, time advances)', played, JSON.stringify(await page.evaluate(() => {
      const a = document.querySelector('.card').audio;
      return a && { duration: a.duration, t: a.currentTime, ended: a.ended, paused: a.paused, err: a.error && a.error.code };
    })));

    // copy as alt text
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
    await card.locator('button.copy').click();
    check('copy as alt text puts the caption on the clipboard',
          (await page.evaluate(() => navigator.clipboard.readText())) === api.caption);

    // attention maps: a result carrying per-word weights over a 7x7 grid
    // (The photo is captioned by the API directly: a re-sent multipart body loses its file.)
    await page.route('**/v1/caption*', async route => {
      const r = await fetch(base + '/v1/caption?n_best=3', {
        method: 'POST', headers: { 'Content-Type': 'image/jpeg' }, body: fs.readFileSync(photo2) });
      const j = await r.json();
      const n = j.caption.split(' ').length, rows = 7, cols = 7;
      j.grid = [rows, cols];
      j.attention = Array.from({ length: n }, (_, k) =>
        Array.from({ length: rows * cols }, (_, i) => (i === (k * 5) % (rows * cols) ? 0.9 : 0.1 / (rows * cols))));
      await route.fulfill({ status: r.status, json: j });
    });
    await page.setInputFiles('#files', photo2);
    await page.waitForFunction(() => document.querySelectorAll('.card[data-done]').length === 2, null, { timeout: 60000 });
    const acard = page.locator('.card').first();
    check('with attention: words are focusable and the hint is shown',
          (await acard.locator('.caption .word[tabindex="0"]').count()) > 1 && await acard.locator('.hint').isVisible());
    const canvasInfo = () => page.evaluate(() => {
      const c = document.querySelector('.card canvas');
      if (!c.width || !c.height) return { word: c.dataset.word, lit: 0 };
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let lit = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) lit++;
      return { word: c.dataset.word, lit, w: c.width };
    });
    await acard.locator('.caption .word').nth(1).hover();
    let ci = await canvasInfo();
    check('hovering word 2 draws its map over the photo', ci.word === '1' && ci.lit > 1000, JSON.stringify(ci));
    await page.screenshot({ path: path.join(outDir, 'serve-1400-attention.png'), fullPage: false });
    await page.mouse.move(2, 2);
    ci = await canvasInfo();
    check('leaving the word clears the map', ci.lit === 0 && ci.word === undefined, JSON.stringify(ci));
    await acard.locator('.caption .word').nth(0).focus();
    ci = await canvasInfo();
    check('focusing a word with the keyboard shows its map too', ci.word === '0' && ci.lit > 1000, JSON.stringify(ci));
    await page.unroute('**/v1/caption*');

    // 400 px
    await page.setViewportSize({ width: 400, height: 900 });
    await page.evaluate(() => document.activeElement.blur());
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
    check('readable at 400 px: no horizontal scrolling', overflow <= 400, `scrollWidth ${overflow}`);
    const fontPx = await page.evaluate(() => parseFloat(getComputedStyle(document.querySelector('.caption')).fontSize));
    check('readable at 400 px: caption text at least 16 px', fontPx >= 16, String(fontPx));
    await page.screenshot({ path: path.join(outDir, 'serve-400.png'), fullPage: true });

    // an error is shown, not swallowed
    fs.writeFileSync(path.join(outDir, 'not-an-image.jpg'), 'plain text');
    await page.setInputFiles('#files', path.join(outDir, 'not-an-image.jpg'));
    await page.waitForFunction(() => document.querySelectorAll('.card[data-done]').length === 3, null, { timeout: 30000 });
    check('a file that is not an image shows the server\'s error as an alert',
          /unknown image format/.test(await page.locator('.card').first().locator('[role=alert]').textContent()));

    check('nothing fetched from outside the server', external.length === 0, external.join(' '));
    const unexpected = consoleErrors.filter(t => !/400 \(Bad Request\)/.test(t));
    check('no script errors on the console', unexpected.length === 0, unexpected.join(' | '));
  } finally {
    await browser.close();
  }
}

main().catch(e => { console.log(e.stack || String(e)); failed++; }).finally(() => {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
});
