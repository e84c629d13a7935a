// carget interop: fetch ipfs://CID[/path] with @helia/verified-fetch from ONE local trustless
// gateway, with no libp2p, no bitswap and no delegated routers, and report what came back.
//
//   node verified-fetch.mjs http://127.0.0.1:PORT CID[/path] [format]
//
// Prints one JSON line: {status, contentType, length, sha256}. format ("raw" | "car") asks
// verified-fetch for a raw block or a CAR instead of the deserialised bytes.
import { createHash } from 'node:crypto'
import { withHTTP } from '@helia/http'
import { createVerifiedFetchWithHelia } from '@helia/verified-fetch'
import { createHeliaLight } from 'helia'

const [gateway, path, format] = process.argv.slice(2)
if (gateway == null || path == null) {
  console.error('usage: node verified-fetch.mjs GATEWAY CID[/path] [raw|car]')
  process.exit(2)
}

const node = withHTTP(createHeliaLight(), {
  delegatedRouters: [], // no routing servers: the gateway below is the only source
  recursiveGateways: [gateway],
  allowInsecure: true, // plain http on loopback
  allowLocal: true
})
// helia 7.1 waits forever when there is no non-fallback router at all (its merge of zero
// router streams never goes idle), so add one that finds nothing, at once
node.addRouter({ name: 'none', async * findProviders () {} })
const helia = await node.start()
const fetch = await createVerifiedFetchWithHelia(helia)
const accept = {
  raw: 'application/vnd.ipld.raw',
  car: 'application/vnd.ipld.car'
}[format ?? '']
try {
  const res = await fetch(`ipfs://${path}`, {
    headers: accept != null ? { accept } : {},
    signal: AbortSignal.timeout(30000)
  })
  const body = new Uint8Array(await res.arrayBuffer())
  console.log(JSON.stringify({
    status: res.status,
    contentType: res.headers.get('content-type'),
    length: body.length,
    sha256: createHash('sha256').update(body).digest('hex')
  }))
} finally {
  await fetch.stop()
  await helia.stop()
}
