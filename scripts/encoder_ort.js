#!/usr/bin/env node
// encoder_ort.js - the ONNX Runtime (CPU) peer of the C encoder: runs an ONNX file, either the
// one scripts/encoder_peer.py exported from OUR encoder file (same network, same weights: --check)
// or the standard torchvision export of the architecture (scripts/encoder_std_peer.py: the speed
// a user gets from ORT).
//   node scripts/encoder_ort.js F.onnx H W C [--check IN.f32 OUT.f32] [--bench --batch 1,8 --seconds S]
//                               [--threads 1,2]
// --bench runs every intra-op thread count of --threads (default: this machine's cores) with
// graph optimisation 'all' and prints each setting (stderr), the best per batch (stdout), and the
// process CPU time per image of each setting ('cpu batch N, T threads: X CPU-ms/image').
// Install: scripts/bench-encoder.sh does `ONNXRUNTIME_NODE_INSTALL=skip npm install` in peers/.
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
  let check = null, bench = false, batches = [1, 8], seconds = 5, threads = [require('os').cpus().length];
  for (let i = 4; i < a.length; i++) {
    if (a[i] === '--check') { check = [a[i + 1], a[i + 2]]; i += 2; }
    else if (a[i] === '--bench') bench = true;
    else if (a[i] === '--batch') batches = a[++i].split(',').map(Number);
    else if (a[i] === '--seconds') seconds = +a[++i];
    else if (a[i] === '--threads') threads = a[++i].split(',').map(Number);
  }
  const open = (n) => ort.InferenceSession.create(file, {
    executionProviders: ['cpu'], intraOpNumThreads: n, interOpNumThreads: 1,
    graphOptimizationLevel: 'all', executionMode: 'sequential',
  });
  const sess = await open(threads[threads.length - 1]);
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
    console.log(`onnxruntime-node ${ort.env.versions.common}: ${path.basename(file)}, intra-op threads ${threads.join('/')}, graph optimisation all`);
    const sessions = [];
    for (const n of threads) sessions.push([n, await open(n)]);
    for (const n of batches) {
      const x = new Float32Array(n * px);
      for (let i = 0; i < x.length; i++) x[i] = Math.random() * 2 - 1;
      let best = null;
      for (const [th, s] of sessions) {
        const feeds = { [s.inputNames[0]]: new ort.Tensor('float32', x, [n, C, H, W]) };
        await s.run(feeds);
        let runs = 0;
        const t0 = process.hrtime.bigint(), u0 = process.cpuUsage();
        let t = 0;
        do {
          await s.run(feeds);
          runs++;
          t = Number(process.hrtime.bigint() - t0) / 1e9;
        } while (t < seconds);
        const du = process.cpuUsage(u0), cpu = (du.user + du.system) / 1e3 / (runs * n);
        const ips = runs * n / t;
        console.error(`  batch ${n}, ${th} threads: ${ips.toFixed(2)} images/s (${(1e3 * t / runs).toFixed(2)} ms/batch, ${runs} runs)`);
        // process CPU time per image: with 1 thread, the work itself, little disturbed by other processes
        console.log(`cpu batch ${n}, ${th} threads: ${cpu.toFixed(2)} CPU-ms/image`);
        if (!best || ips > best[0]) best = [ips, 1e3 * t / runs, runs, th, cpu];
      }
      console.log(`batch ${n}: ${best[0].toFixed(2)} images/s (${best[1].toFixed(2)} ms/batch, ${best[2]} runs; best: ${best[3]} threads), ${best[4].toFixed(1)} CPU-ms/image`);
    }
  }
}
main().catch((e) => { console.error(`encoder_ort.js: ${e.message}`); process.exit(1); });
