// Stand-in for `multiformats/hashes/sha2` inside ipfs-unixfs-importer's persist.js
// (see hooks.mjs). `sha256.digest(bytes)` uses globalThis.__cargetHash:
//   { hasher: MultihashHasher, inlineLimit: number | null }
// With inlineLimit set, a block of at most inlineLimit bytes gets an identity
// multihash, as kubo's `--inline` (boxo cidutil.InlineBuilder: identity when
// len(data) <= limit) does for every block: leaves, file parents, directories.
import { sha256 as realSha256, sha512 as realSha512 } from 'multiformats/hashes/sha2'
import { identity } from 'multiformats/hashes/identity'

export const sha512 = realSha512
export const sha256 = {
  name: 'sha2-256',
  code: 0x12,
  digest (bytes) {
    const cfg = globalThis.__cargetHash
    if (cfg == null) return realSha256.digest(bytes)
    if (cfg.inlineLimit != null && bytes.byteLength <= cfg.inlineLimit) {
      cfg.inlined = (cfg.inlined ?? 0) + 1
      return identity.digest(bytes)
    }
    cfg.hashed = (cfg.hashed ?? 0) + 1
    return cfg.hasher.digest(bytes)
  }
}
