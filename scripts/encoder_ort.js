#!/usr/bin/env node
// encoder_ort.js - the ONNX Runtime (CPU) peer of the C encoder: runs the ONNX file that
// scripts/encoder_peer.py exported from OUR encoder file (same network, same weights).
//   node scripts/encoder_ort.js F.onnx H W C [--check IN.f32 OUT.f32] [--bench --batch 1,8 --seconds S]
//                               [--threads N]   (intra-op threads, default 2; the bench line also
//                               gives the process CPU time per image)
// Uses 2 intra-op threads (this machine's cores). Install: scripts/bench-encoder.sh does
// `ONNXRUNTIME_NODE_INSTALL=skip npm install` in peers/.
'use strict';
const path = require('path');
const fs = require('fs');
const ort = require(path.join(__dirname, '..', 'peers', 'node_modules', 'onnxruntime-node'));

async function main() {
  const a = process.argv.slice(2);
  if (a.length < 4) {
    console.error('usage: encoder_ort.js F.onnx H W C [--check IN.f32 OUT.f32] [--bench] [--batch 1,8] [--seconds S]');
    process.exit(2);
  }
  const [file, H, W, C] = [a[0], +a[1], +a[2], +a[3]];
  let check = null, bench = false, batches = [1, 8], seconds = 5, threads = 2;
  for (let i = 4; i < a.length; i++) {
    if (a[i] === '--check') { check = [a[i + 1], a[i + 2]]; i += 2; }
    else if (a[i] === '--bench') bench = true;
    else if (a[i] === '--batch') batches = a[++i].split(',').map(Number);
    else if (a[i] === '--seconds') seconds = +a[++i];
    else if (a[i] === '--threads') threads = +a[++i];
  }
  const sess = await ort.InferenceSession.create(file, {
    executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1,
    graphOptimizationLevel: 'all', executionMode: 'sequential',
  });
  const inName = sess.inputNames[0], outName = sess.outputNames[0];
  const px = H * W * C;
  if (check) {
    const xb = fs.readFileSync(check[0]), yb = fs.readFileSync(check[1]);
    const x = new Float32Array(xb.buffer, xb.byteOffset, xb.length / 4);
    const want = new Float32Array(yb.buffer, yb.byteOffset, yb.length / 4);
    const n = x.length / px;
    // NHWC -> NCHW
    const t = new Float32Array(x.length);
    for (let b = 0; b < n; b++)
      for (let i = 0; i < H * W; i++)
        for (let c = 0; c < C; c++) t[b * px + c * H * W + i] = x[b * px + i * C + c];
    const out = (await sess.run({ [inName]: new ort.Tensor('float32', t, [n, C, H, W]) }))[outName].data;
    const d = want.length / n;
    let minCos = 1, maxDiff = 0;
    for (let b = 0; b < n; b++) {
      let uv = 0, uu = 0, vv = 0;
      for (let i = 0; i < d; i++) {
        const u = out[b * d + i], v = want[b * d + i];
        uv += u * v; uu += u * u; vv += v * v;
        maxDiff = Math.max(maxDiff, Math.abs(u - v));
      }
      minCos = Math.min(minCos, uv / Math.sqrt(uu * vv));
    }
    console.log(`check onnxruntime: ${n} images, min cosine ${minCos.toFixed(8)}, max |diff| ${maxDiff.toExponential(3)}`);
    if (minCos < 0.9999) process.exit(1);
  }
  if (bench) {
    console.log(`onnxruntime-node ${ort.env.versions.common}: ${path.basename(file)}, ${threads} intra-op threads`);
    for (const n of batches) {
      const x = new Float32Array(n * px);
      for (let i = 0; i < x.length; i++) x[i] = Math.random() * 2 - 1;
      const feeds = { [inName]: new ort.Tensor('float32', x, [n, C, H, W]) };
      await sess.run(feeds);
      let runs = 0;
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      let t = 0;
      do {
        await sess.run(feeds);
        runs++;
        t = Number(process.hrtime.bigint() - t0) / 1e9;
      } while (t < seconds);
      const cpu = process.cpuUsage(c0);
      console.log(`batch ${n}: ${(runs * n / t).toFixed(2)} images/s (${(1e3 * t / runs).toFixed(2)} ms/batch, ${runs} runs), ` +
        `${((cpu.user + cpu.system) / 1e3 / runs / n).toFixed(1)} CPU-ms/image`);
    }
  }
}
main().catch((e) => { console.error(`encoder_ort.js: ${e.message}`); process.exit(1); });
