// JS oracle for carget's --preserve-mode/--preserve-mtime tests: imports a tree with
// ipfs-unixfs-importer (kubo settings, as tests/interop/js/import.mjs) passing every
// node's lstat mode (12 permission bits) and mtime, and prints {root, entries} as JSON.
// Only used with non-default modes and non-zero nanoseconds: this importer omits 0644/0755
// modes and writes a zero nanosecond field, where boxo writes the mode and omits zero nanos.
import { lstatSync, readdirSync, readlinkSync, readFileSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'

const NM = new URL('../interop/js/node_modules/', import.meta.url)
const { importer } = await import(new URL('ipfs-unixfs-importer/dist/src/index.js', NM))
const { fixedSize } = await import(new URL('ipfs-unixfs-importer/dist/src/chunker/fixed-size.js', NM))
const { balanced } = await import(new URL('ipfs-unixfs-importer/dist/src/layout/balanced.js', NM))

const job = JSON.parse(readFileSync(0, 'utf8'))

function meta (st, withMode) {
  const m = {}
  if (job.mode && withMode) m.mode = Number(st.mode & 0o7777n)
  if (job.mtime) {
    const ns = st.mtimeNs
    m.mtime = { secs: ns / 1000000000n, nsecs: Number(ns % 1000000000n) }
  }
  return m
}

function * walk (abs, rel) {
  const st = lstatSync(abs, { bigint: true })
  if (st.isSymbolicLink()) {
    yield { path: rel, link: readlinkSync(abs), ...meta(st, false) }
  } else if (st.isDirectory()) {
    yield { path: rel, ...meta(st, true) }
    for (const name of readdirSync(abs).sort()) yield * walk(join(abs, name), `${rel}/${name}`)
  } else {
    yield { path: rel, content: readFileSync(abs), ...meta(st, true) }
  }
}

const abs = resolve(job.path)
const opts = {
  cidVersion: job.cidVersion ?? 0,
  rawLeaves: false,
  reduceSingleLeafToSelf: true,
  leafType: 'file',
  chunker: fixedSize({ chunkSize: job.chunkSize ?? 262144 }),
  layout: balanced({ maxChildrenPerNode: 174 }),
  shardSplitThresholdBytes: 262143,
  shardSplitStrategy: 'links-bytes',
  fieldOrder: 'links-first'
}
const entries = []
for await (const e of importer(walk(abs, basename(abs)), { put: async (c) => c }, opts)) {
  entries.push({ path: e.path ?? '', cid: e.cid.toString() })
}
process.stdout.write(JSON.stringify({ root: entries[entries.length - 1].cid, entries }) + '\n')
