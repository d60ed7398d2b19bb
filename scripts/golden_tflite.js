// golden_tflite.js - runs a .tflite model in TensorFlow Lite's own runtime
// (npm @tensorflow/tfjs-tflite: the TFLite C++ interpreter compiled to WASM,
// loaded directly with its Emscripten module in Node) on raw uint8 input
// tensors and writes a golden file for tests/test_tflite.c.
//
// usage: node scripts/golden_tflite.js MODEL.tflite OUT.txt INPUT.u8...
//   INPUT.u8: H*W*3 bytes, the exact uint8 tensor imcap feeds the network
//   (written by `imcap classify --dump-inputs DIR`).
//
// To read the pooled embedding and the logits, which are not outputs of the
// model, the script appends to the flatbuffer a new outputs vector for
// subgraph 0 [probs, logits, embedding] and repoints the SubGraph.outputs
// field to it (flatbuffer offsets point forward, so an appended vector is
// reachable). The embedding is the AVERAGE_POOL_2D output, the logits the
// output of the CONV_2D that reads it.
//
// Output file, one record per input:
//   image NAME crc32 CRC
//   probs IDX:Q ...        (non-zero uint8 softmax outputs; prob = scale*(Q-zp))
//   logits Q...            (1001 uint8)
//   embedding Q...         (1280 uint8)
// after a header giving each output's scale and zero point.
'use strict';
const fs = require('fs');
const path = require('path');

const wasmDir = path.join(__dirname, '..', 'peers', 'node_modules', '@tensorflow', 'tfjs-tflite', 'wasm');

// ---- minimal flatbuffer reading (the file is trusted here: it is the model we test)
function u32(b, p) { return b.readUInt32LE(p); }
function table(b, p) {
  const vt = p - b.readInt32LE(p);
  return { b, p, vt, vtLen: b.readUInt16LE(vt) };
}
function fieldPos(t, id) {
  const slot = 4 + 2 * id;
  if (slot >= t.vtLen) return 0;
  const off = t.b.readUInt16LE(t.vt + slot);
  return off ? t.p + off : 0;
}
function ref(t, id) { const f = fieldPos(t, id); return f ? f + u32(t.b, f) : 0; }
function vec(t, id) { const at = ref(t, id); return at ? { pos: at + 4, len: u32(t.b, at) } : { pos: 0, len: 0 }; }
function vecTable(b, v, i) { const e = v.pos + 4 * i; return table(b, e + u32(b, e)); }
function i32s(b, v) { const r = []; for (let i = 0; i < v.len; i++) r.push(b.readInt32LE(v.pos + 4 * i)); return r; }
function scalar(t, id, size, def) {
  const f = fieldPos(t, id);
  if (!f) return def;
  return size === 1 ? t.b.readInt8(f) : t.b.readInt32LE(f);
}

function inspect(buf) {
  const model = table(buf, u32(buf, 0));
  const codes = vec(model, 1), subgraphs = vec(model, 2);
  const sg = vecTable(buf, subgraphs, 0);
  const tensors = vec(sg, 0), ops = vec(sg, 3);
  const opcode = [];
  for (let i = 0; i < codes.len; i++) {
    const c = vecTable(buf, codes, i);
    opcode.push(Math.max(scalar(c, 0, 1, 0), scalar(c, 3, 4, 0)));
  }
  const quant = [];
  for (let i = 0; i < tensors.len; i++) {
    const t = vecTable(buf, tensors, i);
    const q = ref(t, 4);
    let scale = 0, zp = 0;
    if (q) {
      const qt = table(buf, q);
      const s = vec(qt, 2), z = vec(qt, 3);
      if (s.len) scale = buf.readFloatLE(s.pos);
      if (z.len) zp = Number(buf.readBigInt64LE(z.pos));
    }
    quant.push({ scale, zp });
  }
  const list = [];
  for (let i = 0; i < ops.len; i++) {
    const o = vecTable(buf, ops, i);
    list.push({ code: opcode[scalar(o, 0, 4, 0)], ins: i32s(buf, vec(o, 1)), outs: i32s(buf, vec(o, 2)) });
  }
  const pool = list.find(o => o.code === 1 /* AVERAGE_POOL_2D */);
  const cls = list.find(o => o.code === 3 /* CONV_2D */ && o.ins[0] === pool.outs[0]);
  const out = i32s(buf, vec(sg, 2));
  return { sg, quant, probs: out[0], logits: cls.outs[0], embedding: pool.outs[0] };
}

function withExtraOutputs(buf, info) {
  const pad = (4 - (buf.length % 4)) % 4;
  const extra = Buffer.alloc(pad + 16);
  const at = buf.length + pad;
  extra.writeUInt32LE(3, pad);
  extra.writeInt32LE(info.probs, pad + 4);
  extra.writeInt32LE(info.logits, pad + 8);
  extra.writeInt32LE(info.embedding, pad + 12);
  const out = Buffer.concat([buf, extra]);
  const f = fieldPos(info.sg, 2);
  out.writeUInt32LE(at - f, f);
  return out;
}

function crc32(bytes) {
  let c, crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) {
    c = (crc ^ bytes[i]) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

async function main() {
  const [modelPath, outPath, ...inputs] = process.argv.slice(2);
  if (!outPath || inputs.length === 0) {
    console.error('usage: node scripts/golden_tflite.js MODEL.tflite OUT.txt INPUT.u8...');
    process.exit(2);
  }
  const factory = require(path.join(wasmDir, 'tflite_web_api_cc.js'));
  const M = await factory({ wasmBinary: fs.readFileSync(path.join(wasmDir, 'tflite_web_api_cc.wasm')) });
  const orig = fs.readFileSync(modelPath);
  const info = inspect(orig);
  const model = withExtraOutputs(orig, info);
  const mem = M._malloc(model.length);
  M.HEAPU8.set(model, mem);
  const created = M.TFLiteWebModelRunner.CreateFromBufferAndOptions(mem, model.length,
    { numThreads: 1, enableProfiling: false, maxProfilingBufferEntries: 1024 });
  if (!created.ok()) throw new Error('TFLite: ' + created.errorMessage());
  const runner = created.value();
  const ins = runner.GetInputs(), outs = runner.GetOutputs();
  if (ins.size() !== 1 || outs.size() !== 3) throw new Error('unexpected model inputs/outputs');
  const input = ins.get(0);
  const shape = input.shape.split(',').map(Number);
  const need = shape.reduce((a, b) => a * b, 1);
  const q = t => info.quant[t];
  const lines = [
    `# golden outputs of ${path.basename(modelPath)} from TensorFlow Lite (npm @tensorflow/tfjs-tflite ` +
      `${require(path.join(wasmDir, '..', 'package.json')).version}), made by scripts/golden_tflite.sh`,
    `model ${path.basename(modelPath)}`,
    `quant probs ${q(info.probs).scale} ${q(info.probs).zp} logits ${q(info.logits).scale} ${q(info.logits).zp} ` +
      `embedding ${q(info.embedding).scale} ${q(info.embedding).zp}`,
  ];
  for (const f of inputs) {
    const x = fs.readFileSync(f);
    if (x.length !== need) throw new Error(`${f}: ${x.length} bytes, the model input needs ${need}`);
    input.data().set(x);
    if (!runner.Infer()) throw new Error('TFLite inference failed');
    const probs = outs.get(0).data(), logits = outs.get(1).data(), emb = outs.get(2).data();
    if (probs.length !== 1001 || logits.length !== 1001 || emb.length !== 1280) throw new Error('unexpected output sizes');
    const nz = [];
    probs.forEach((v, i) => { if (v !== q(info.probs).zp) nz.push(`${i}:${v}`); });
    lines.push(`image ${path.basename(f, '.u8')} crc32 ${crc32(x)}`);
    lines.push('probs ' + nz.join(' '));
    lines.push('logits ' + Array.from(logits).join(' '));
    lines.push('embedding ' + Array.from(emb).join(' '));
  }
  fs.writeFileSync(outPath, lines.join('\n') + '\n');
}

main().catch(e => { console.error('golden_tflite.js: ' + e.message); process.exit(1); });
