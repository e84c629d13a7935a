// Module resolve hook (registered by import.mjs): ipfs-unixfs-importer hard-codes
// sha2-256 in dist/src/utils/persist.js (`import { sha256 } from
// 'multiformats/hashes/sha2'`). For that one importer file we hand out
// hash-shim.mjs instead, whose `sha256` delegates to the job's hasher
// (sha2-256 by default, so unshimmed behaviour is unchanged). Nothing else
// in the importer is touched.
export async function resolve (specifier, context, nextResolve) {
  if (specifier === 'multiformats/hashes/sha2' &&
      context.parentURL != null &&
      context.parentURL.endsWith('/ipfs-unixfs-importer/dist/src/utils/persist.js')) {
    return { url: new URL('./hash-shim.mjs', import.meta.url).href, shortCircuit: true }
  }
  return nextResolve(specifier, context)
}
