#!/usr/bin/env node
// Interop oracle for carget's CAR tests: read a CAR (v1 or v2) with @ipld/car's streaming
// CarBlockIterator, check every block's sha2-256 multihash with `multiformats`, and print
// one JSON object: { version, roots: [cid], blocks: [{ cid, size, sha256 }] }.
// Usage: node car-read.mjs FILE.car
import fs from 'node:fs'
import crypto from 'node:crypto'
import { CarBlockIterator } from '@ipld/car/iterator'
import { sha256 } from 'multiformats/hashes/sha2'
import { equals } from 'multiformats/bytes'

const path = process.argv[2]
if (!path) {
  console.error('usage: node car-read.mjs FILE.car')
  process.exit(2)
}
const iter = await CarBlockIterator.fromIterable(fs.createReadStream(path))
const roots = (await iter.getRoots()).map(String)
const blocks = []
for await (const { cid, bytes } of iter) {
  if (cid.multihash.code === sha256.code) {
    const digest = await sha256.digest(bytes)
    if (!equals(digest.bytes, cid.multihash.bytes)) {
      console.error(`hash mismatch: ${cid}`)
      process.exit(4)
    }
  }
  blocks.push({
    cid: cid.toString(),
    size: bytes.length,
    sha256: crypto.createHash('sha256').update(bytes).digest('hex')
  })
}
console.log(JSON.stringify({ version: iter.version, roots, blocks }))
