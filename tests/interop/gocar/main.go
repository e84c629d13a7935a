// carget-gocar drives the go-car v2 library (github.com/ipld/go-car/v2) from the interop
// tests. go-car's own `car` command lives in a module the Go module proxy does not serve
// (github.com/ipld/go-car/cmd), so this small program calls the same library functions
// that command is built on. Commands:
//
//	verify FILE.car          every block's hash, roots present, and for a CARv2 its
//	                         header sizes and that the index finds every block
//	ls FILE.car              the CID of every block, in file order (hashes checked)
//	roots FILE.car           the roots in the header
//	create OUT.car PATH      import PATH as UnixFS (go-unixfsnode's builder, as
//	                         `car create`) into a CARv2 with an index; prints the root
//	wrap IN.car OUT.car      CARv1 -> CARv2 with a generated index
//	extract-v1 IN.car OUT.car CARv2 -> its inner CARv1
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-unixfsnode/data/builder"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/blockstore"
	"github.com/ipld/go-car/v2/index"
	"github.com/ipld/go-ipld-prime"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: carget-gocar verify|ls|roots|create|wrap|extract-v1 ARGS...")
		os.Exit(2)
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "verify":
		_, err = verify(args[0])
	case "ls":
		var cids []cid.Cid
		if cids, err = readBlocks(args[0]); err == nil {
			for _, c := range cids {
				fmt.Println(c)
			}
		}
	case "roots":
		err = roots(args[0])
	case "create":
		if len(args) != 2 {
			err = errors.New("usage: create OUT.car PATH")
			break
		}
		err = create(args[0], args[1])
	case "wrap":
		err = carv2.WrapV1File(args[0], args[1])
	case "extract-v1":
		err = carv2.ExtractV1File(args[0], args[1])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// readBlocks reads every block, checking each against its CID (WithTrustedCAR(false)).
func readBlocks(path string) ([]cid.Cid, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br, err := carv2.NewBlockReader(f, carv2.WithTrustedCAR(false))
	if err != nil {
		return nil, err
	}
	var out []cid.Cid
	for {
		blk, err := br.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, blk.Cid())
	}
}

func roots(path string) error {
	rx, err := carv2.OpenReader(path)
	if err != nil {
		return err
	}
	defer rx.Close()
	rs, err := rx.Roots()
	if err != nil {
		return err
	}
	for _, r := range rs {
		fmt.Println(r)
	}
	return nil
}

func verify(path string) ([]cid.Cid, error) {
	rx, err := carv2.OpenReader(path)
	if err != nil {
		return nil, err
	}
	defer rx.Close()
	rs, err := rx.Roots()
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, errors.New("no roots in the CAR header")
	}
	if rx.Version == 2 {
		st, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if rx.Header.DataSize == 0 {
			return nil, errors.New("CARv2 header: data size 0")
		}
		// DataOffset counts from the start of the file, pragma and header included
		if rx.Header.DataOffset < carv2.PragmaSize+carv2.HeaderSize {
			return nil, errors.New("CARv2 header: data offset inside the header")
		}
		end := rx.Header.DataOffset + rx.Header.DataSize
		if uint64(st.Size()) > end && rx.Header.IndexOffset == 0 {
			return nil, errors.New("CARv2 header: no index, yet bytes follow the data")
		}
		if rx.Header.HasIndex() && rx.Header.IndexOffset < end {
			return nil, errors.New("CARv2 header: index overlaps the data")
		}
	}
	cids, err := readBlocks(path)
	if err != nil {
		return nil, err
	}
	missing := make(map[cid.Cid]struct{})
	for _, r := range rs {
		missing[r] = struct{}{}
	}
	for _, c := range cids {
		delete(missing, c)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("root(s) not present as a block: %v", missing)
	}
	if rx.Version == 2 && rx.Header.HasIndex() {
		ir, err := rx.IndexReader()
		if err != nil {
			return nil, err
		}
		idx, err := index.ReadFrom(ir)
		if err != nil {
			return nil, err
		}
		for _, c := range cids {
			if err := idx.GetAll(c, func(uint64) bool { return true }); err != nil {
				return nil, fmt.Errorf("index does not find %s: %w", c, err)
			}
		}
	}
	return cids, nil
}

func create(out, path string) error {
	// a placeholder root of the final CID's length, replaced once the DAG is built
	digest, err := multihash.Sum(nil, multihash.SHA2_256, -1)
	if err != nil {
		return err
	}
	placeholder := cid.NewCidV1(uint64(multicodec.DagPb), digest)
	// OpenReadWrite resumes an existing CAR: start from nothing, as `car create` does
	if err := os.Remove(out); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	bs, err := blockstore.OpenReadWrite(out, []cid.Cid{placeholder})
	if err != nil {
		return err
	}
	ctx := context.Background()
	ls := cidlink.DefaultLinkSystem()
	ls.TrustedStorage = true
	ls.StorageReadOpener = func(_ ipld.LinkContext, l ipld.Link) (io.Reader, error) {
		blk, err := bs.Get(ctx, l.(cidlink.Link).Cid)
		if err != nil {
			return nil, err
		}
		return bytes.NewReader(blk.RawData()), nil
	}
	ls.StorageWriteOpener = func(_ ipld.LinkContext) (io.Writer, ipld.BlockWriteCommitter, error) {
		var buf bytes.Buffer
		return &buf, func(l ipld.Link) error {
			blk, err := blocks.NewBlockWithCid(buf.Bytes(), l.(cidlink.Link).Cid)
			if err != nil {
				return err
			}
			return bs.Put(ctx, blk)
		}, nil
	}
	root, _, err := builder.BuildUnixFSRecursive(path, &ls)
	if err != nil {
		return err
	}
	if err := bs.Finalize(); err != nil {
		return err
	}
	rc := root.(cidlink.Link).Cid
	if err := carv2.ReplaceRootsInFile(out, []cid.Cid{rc}); err != nil {
		return err
	}
	fmt.Println(rc)
	return nil
}
