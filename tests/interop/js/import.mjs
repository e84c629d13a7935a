#!/usr/bin/env node
// JS oracle for carget's differential tests and golden vectors.
//
// Reads a JSON list of jobs on stdin and prints one JSON object per job, one
// per line (JSON Lines), in input order. A job is
//
//   { "id": "any label",            // echoed back (optional)
//     "path": "/abs/file/or/dir",
//     "kubo": { ...kubo CLI flags... },       // optional, translated below
//     "options": { ...importer options... } } // optional, overrides "kubo"
//
// kubo flags (names as `ipfs add` spells them): "cid-version", "raw-leaves",
// "chunker" ("size-N"), "trickle", "hash" (sha2-256, sha2-512, sha3-256,
// blake2b-256), "inline", "inline-limit", "wrap-with-directory", "hidden",
// "profile" ("legacy-cid-v0" a.k.a. "unixfs-v0-2015", "unixfs-v1-2025"),
// "max-links" (kubo config Import.UnixFSFileMaxLinks; not a flag in v0.22).
//
// options (camelCase): cidVersion, rawLeaves, chunkSize, trickle (bool) or
// layout ("balanced"/"trickle"), hash, maxChildrenPerNode, layerRepeat,
// wrapWithDirectory, shardSplitThresholdBytes, shardSplitStrategy
// ("links-bytes"/"block-bytes"), inlineLimit (number, or null for off),
// reduceSingleLeafToSelf, leafType, hidden.
//
// Output: { id, path, root, entries: [{ path, cid, size }], options, importer }
// or { id, path, error } — entries are every UnixFS node the importer yields
// (each file, symlink and directory, with paths relative to the parent of the
// imported path, '' for a -w wrapper), like the lines `ipfs add -r` prints.
//
// Defaults are chosen to reproduce kubo:
//   * CIDv0, sha2-256, size-262144, balanced with 174 links per node,
//     dag-pb leaves of UnixFS type File (leafType 'file'), and a file of one
//     block is that block (reduceSingleLeafToSelf true);
//   * cidVersion 1 (or a non-sha2-256 hash, which forces CIDv1) implies raw
//     leaves unless rawLeaves is false;
//   * trickle: 174 links, layerRepeat 4, UnixFS type Raw leaves (leafType
//     'raw') and no single-leaf collapse (reduceSingleLeafToSelf false), as
//     boxo's trickle.Layout (root is always a parent, even for 0 or 1 chunk);
//   * HAMT: links-bytes estimate (sum of name bytes + CID bytes), and
//     shardSplitThresholdBytes 262143, because kubo v0.22 (boxo <= 0.36)
//     shards at estimate >= 262144 while this importer shards at > threshold.
//     (boxo >= 0.37 / kubo 0.40+ switched to '>': pass
//     shardSplitThresholdBytes 262144 for that.) Profile unixfs-v1-2025 uses
//     the block-bytes estimate with threshold 262144 and '>', as IPIP-499.
//   * --inline: identity multihash (always CIDv1) for every block of at most
//     inline-limit (32) bytes. Only supported here with CIDv1 (the importer
//     cannot mix a CIDv0 parent with identity children).
//
// Non-sha2-256 hashes and --inline are not importer options: hooks.mjs swaps
// the importer's hard-coded sha256 (in utils/persist.js only) for
// hash-shim.mjs, which hashes with the job's hasher. Every result is checked
// to carry the requested multihash code.
import { register } from 'node:module'
import { readFileSync, createReadStream, lstatSync, readdirSync, readlinkSync } from 'node:fs'
import { basename, join, resolve as resolvePath } from 'node:path'

register('./hooks.mjs', import.meta.url)

const { importer } = await import('ipfs-unixfs-importer')
const { fixedSize } = await import('ipfs-unixfs-importer/chunker')
const { balanced, trickle } = await import('ipfs-unixfs-importer/layout')
const { sha256, sha512 } = await import('multiformats/hashes/sha2')
const { sha3256 } = await import('@multiformats/sha3')
const { blake2b256 } = await import('@multiformats/blake2/blake2b')

const IMPORTER_VERSION = JSON.parse(readFileSync(
  new URL('./node_modules/ipfs-unixfs-importer/package.json', import.meta.url), 'utf8')).version
const IMPORTER = `ipfs-unixfs-importer ${IMPORTER_VERSION}`

const HASHERS = {
  'sha2-256': sha256,
  'sha2-512': sha512,
  'sha3-256': sha3256,
  'blake2b-256': blake2b256
}

const PROFILES = {
  'legacy-cid-v0': { cidVersion: 0, rawLeaves: false, chunkSize: 262144, maxChildrenPerNode: 174, shardSplitStrategy: 'links-bytes' },
  'unixfs-v0-2015': { cidVersion: 0, rawLeaves: false, chunkSize: 262144, maxChildrenPerNode: 174, shardSplitStrategy: 'links-bytes' },
  'unixfs-v1-2025': { cidVersion: 1, rawLeaves: true, chunkSize: 1048576, maxChildrenPerNode: 1024, shardSplitStrategy: 'block-bytes' }
}

/** kubo `ipfs add` flags -> resolved options (kubo v0.22 coreapi rules). */
export function fromKubo (flags = {}) {
  const o = {}
  const known = new Set(['cid-version', 'raw-leaves', 'chunker', 'trickle', 'hash', 'inline',
    'inline-limit', 'wrap-with-directory', 'w', 'hidden', 'H', 'profile', 'max-links',
    'recursive', 'r', 'only-hash', 'n', 'quieter', 'Q', 'quiet', 'q'])
  for (const k of Object.keys(flags)) {
    if (!known.has(k)) throw new Error(`unsupported kubo flag: ${k}`)
  }
  const profile = flags.profile
  if (profile != null) {
    const p = PROFILES[profile]
    if (p == null) throw new Error(`unknown profile: ${profile}`)
    Object.assign(o, p)
  }
  if (flags['cid-version'] != null) o.cidVersion = flags['cid-version']
  if (flags['raw-leaves'] != null) o.rawLeaves = flags['raw-leaves']
  if (flags.chunker != null) {
    const m = /^size-(\d+)$/.exec(flags.chunker)
    if (m == null) throw new Error(`unsupported chunker: ${flags.chunker}`)
    o.chunkSize = Number(m[1])
  }
  if (flags.trickle) o.trickle = true
  if (flags.hash != null) o.hash = flags.hash
  if (flags['max-links'] != null) o.maxChildrenPerNode = flags['max-links']
  if (flags.inline) o.inlineLimit = flags['inline-limit'] ?? 32
  if (flags['wrap-with-directory'] || flags.w) o.wrapWithDirectory = true
  if (flags.hidden || flags.H) o.hidden = true
  return o
}

/** Fill in kubo's defaults and implications. */
function resolveOptions (job) {
  const o = { ...fromKubo(job.kubo ?? {}), ...(job.options ?? {}) }
  const r = {}
  r.hash = o.hash ?? 'sha2-256'
  if (HASHERS[r.hash] == null) throw new Error(`unsupported hash: ${r.hash}`)
  r.cidVersion = o.cidVersion
  if (r.hash !== 'sha2-256') {
    if (r.cidVersion === 0) throw new Error('CIDv0 only supports sha2-256')
    r.cidVersion = 1
  }
  if (r.cidVersion == null) r.cidVersion = 0
  r.rawLeaves = o.rawLeaves ?? (r.cidVersion > 0)
  r.chunkSize = o.chunkSize ?? 262144
  r.layout = o.layout ?? (o.trickle ? 'trickle' : 'balanced')
  r.maxChildrenPerNode = o.maxChildrenPerNode ?? 174
  if (r.layout === 'trickle') r.layerRepeat = o.layerRepeat ?? 4
  r.reduceSingleLeafToSelf = o.reduceSingleLeafToSelf ?? (r.layout !== 'trickle')
  r.leafType = o.leafType ?? (r.layout === 'trickle' ? 'raw' : 'file')
  r.wrapWithDirectory = o.wrapWithDirectory ?? false
  r.shardSplitStrategy = o.shardSplitStrategy ?? 'links-bytes'
  r.shardSplitThresholdBytes = o.shardSplitThresholdBytes ??
    (r.shardSplitStrategy === 'links-bytes' ? 262143 : 262144)
  r.inlineLimit = o.inlineLimit ?? null
  if (r.inlineLimit != null && r.cidVersion !== 1) {
    throw new Error('inline (identity CIDs) is only supported with CIDv1 here')
  }
  r.hidden = o.hidden ?? false
  return r
}

function * walk (abs, rel, hidden) {
  const st = lstatSync(abs)
  if (st.isSymbolicLink()) {
    yield { path: rel, link: readlinkSync(abs) }
  } else if (st.isDirectory()) {
    yield { path: rel }
    const names = readdirSync(abs).sort()
    for (const name of names) {
      if (!hidden && name.startsWith('.')) continue
      yield * walk(join(abs, name), `${rel}/${name}`, hidden)
    }
  } else if (st.isFile()) {
    yield { path: rel, content: createReadStream(abs, { highWaterMark: 1 << 20 }) }
  } else {
    throw new Error(`unsupported file type: ${abs}`)
  }
}

async function runJob (job) {
  const r = resolveOptions(job)
  const abs = resolvePath(job.path)
  globalThis.__cargetHash = { hasher: HASHERS[r.hash], inlineLimit: r.inlineLimit }
  const opts = {
    cidVersion: r.cidVersion,
    rawLeaves: r.rawLeaves,
    reduceSingleLeafToSelf: r.reduceSingleLeafToSelf,
    leafType: r.leafType,
    chunker: fixedSize({ chunkSize: r.chunkSize }),
    layout: r.layout === 'trickle'
      ? trickle({ maxChildrenPerNode: r.maxChildrenPerNode, layerRepeat: r.layerRepeat })
      : balanced({ maxChildrenPerNode: r.maxChildrenPerNode }),
    wrapWithDirectory: r.wrapWithDirectory,
    shardSplitThresholdBytes: r.shardSplitThresholdBytes,
    shardSplitStrategy: r.shardSplitStrategy,
    shardFanoutBits: 8,
    fieldOrder: 'links-first',
    // kubo builds files one after another; concurrency does not change CIDs,
    // it only bounds memory here.
    fileImportConcurrency: 4,
    blockWriteConcurrency: 10
  }
  const store = { put: async (cid) => cid } // --only-hash: blocks are dropped
  const entries = []
  for await (const e of importer(walk(abs, basename(abs), r.hidden), store, opts)) {
    entries.push({ path: e.path ?? '', cid: e.cid.toString(), size: Number(e.size) })
  }
  const root = entries[entries.length - 1]
  const stats = globalThis.__cargetHash
  // the shim must really have been used: check the root's multihash
  const { CID } = await import('multiformats/cid')
  const c = CID.parse(root.cid)
  const wantCode = HASHERS[r.hash].code
  if (c.multihash.code !== wantCode && !(r.inlineLimit != null && c.multihash.code === 0x00)) {
    throw new Error(`hash shim not applied: root ${root.cid} has multihash 0x${c.multihash.code.toString(16)}`)
  }
  if (r.inlineLimit == null && (stats.inlined ?? 0) > 0) throw new Error('unexpected identity block')
  return { id: job.id, path: job.path, root: root.cid, entries, options: r, importer: IMPORTER }
}

const jobs = JSON.parse(readFileSync(0, 'utf8'))
for (const job of jobs) {
  let out
  try {
    out = await runJob(job)
  } catch (err) {
    out = { id: job.id, path: job.path, error: String(err?.message ?? err), importer: IMPORTER }
  }
  process.stdout.write(JSON.stringify(out) + '\n')
}
