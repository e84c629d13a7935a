#!/usr/bin/env node
// Interop oracle for carget's CAR tests: write a CARv1 with @ipld/car's CarWriter holding
// raw leaves (CIDv1), a dag-pb UnixFS-less node (CIDv0) linking them, and a dag-cbor root
// linking the dag-pb node; print { roots, blocks: [{ cid, size, sha256 }] } as JSON.
// Usage: node car-write.mjs OUT.car
import fs from 'node:fs'
import crypto from 'node:crypto'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { CarWriter } from '@ipld/car/writer'
import * as dagPB from '@ipld/dag-pb'
import * as dagCBOR from '@ipld/dag-cbor'
import * as raw from 'multiformats/codecs/raw'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'

const out = process.argv[2]
if (!out) {
  console.error('usage: node car-write.mjs OUT.car')
  process.exit(2)
}
const blocks = []
async function add (codec, bytes, version = 1) {
  const cid = CID.create(version, codec.code, await sha256.digest(bytes))
  blocks.push({ cid, bytes })
  return cid
}
const leaves = []
for (const size of [1, 1000, 262144, 70000]) {
  const bytes = new Uint8Array(size)
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + size) & 0xff
  leaves.push({ cid: await add(raw, bytes), size })
}
const pb = dagPB.encode(dagPB.prepare({
  Links: leaves.map((l, i) => ({ Hash: l.cid, Name: `leaf-${i}`, Tsize: l.size }))
}))
const pbCid = await add(dagPB, pb, 0)
const root = await add(dagCBOR, dagCBOR.encode({ node: pbCid, note: 'carget interop', n: 7 }))

const { writer, out: stream } = CarWriter.create([root])
const done = pipeline(Readable.from(stream), fs.createWriteStream(out))
for (const b of blocks.reverse()) await writer.put(b)
await writer.close()
await done
console.log(JSON.stringify({
  roots: [root.toString()],
  blocks: blocks.map(b => ({
    cid: b.cid.toString(),
    size: b.bytes.length,
    sha256: crypto.createHash('sha256').update(b.bytes).digest('hex')
  }))
}))
