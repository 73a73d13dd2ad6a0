package vault

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"

	"go.etcd.io/bbolt"
)

// checkPages walks the B+tree of the file behind tx from its root, reading
// pages from the file rather than through bbolt's map, and checks what
// bbolt trusts without checking: that every page it reaches says it is that
// page, is a branch or a leaf, ends within the file's pages, and holds
// elements that lie within it, with children inside the file. It runs before
// bbolt's own Check in a full verify: on a file with one byte changed in a
// page header or an element, Check and the reads after it faulted on
// addresses past the map (SIGBUS, the whole process gone), panicked, or
// followed an overflow count of 2^31 pages until the machine ran out of
// memory, where verify must report damage (a review found one flipped byte
// in eleven did). It does not look at keys and values themselves: Check
// and the checks after it do.
//
// The page layout is bbolt's (internal/common/page.go, meta.go): a 16-byte
// header (id uint64, flags uint16, count uint16, overflow uint32), then
// count elements of 16 bytes whose key and value offsets count from the
// element itself.
func checkPages(tx *bbolt.Tx) error {
	f, err := os.Open(tx.DB().Path())
	if err != nil {
		return err
	}
	defer f.Close()
	size := int64(tx.DB().Info().PageSize)
	return checkPagesIn(f, size, uint64(tx.Size()/size))
}

// checkPagesIn is checkPages on the file f of pages pages of size bytes.
func checkPagesIn(f *os.File, size int64, pages uint64) error {
	if pages < 2 {
		return fmt.Errorf("the file holds %d pages, fewer than its two meta pages", pages)
	}
	w := &pageWalker{f: f, size: size, pages: pages, seen: map[uint64]bool{}}
	m, err := w.meta()
	if err != nil {
		return err
	}
	if m.freelist != noFreelist {
		if err := w.freelist(m.freelist); err != nil {
			return err
		}
	}
	return w.walk(m.root, 0)
}

const (
	pageHeader  = 16
	elemSize    = 16
	branchPage  = 0x01
	leafPage    = 0x02
	freePage    = 0x10
	bucketLeaf  = 0x01
	maxDepth    = 64
	noFreelist  = ^uint64(0)
	metaSumFrom = pageHeader
	metaSumTo   = pageHeader + 56
)

type pageWalker struct {
	f     *os.File
	size  int64  // page size
	pages uint64 // pages the transaction's file holds (its high-water mark)
	seen  map[uint64]bool
}

// read returns n bytes of the file at off.
func (w *pageWalker) read(off, n int64) ([]byte, error) {
	b := make([]byte, n)
	if _, err := w.f.ReadAt(b, off); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("page data at byte %d is past the end of the file", off)
		}
		return nil, err
	}
	return b, nil
}

// metaPage is what checkPages and checkFileForOpen read of a meta page.
type metaPage struct {
	pageSize, root, freelist, pgid uint64
}

// meta returns the newest valid meta page (checksum), the one bbolt opens
// and the transaction reads.
func (w *pageWalker) meta() (metaPage, error) {
	var best metaPage
	var bestTx uint64
	found := false
	for id := range int64(2) {
		b, err := w.read(id*w.size, metaSumTo+8)
		if err != nil {
			return metaPage{}, err
		}
		h := fnv.New64a()
		h.Write(b[metaSumFrom:metaSumTo])
		if h.Sum64() != binary.LittleEndian.Uint64(b[metaSumTo:]) {
			continue
		}
		if txid := binary.LittleEndian.Uint64(b[pageHeader+48:]); !found || txid > bestTx {
			bestTx, found = txid, true
			best = metaPage{
				pageSize: uint64(binary.LittleEndian.Uint32(b[pageHeader+8:])),
				root:     binary.LittleEndian.Uint64(b[pageHeader+16:]),
				freelist: binary.LittleEndian.Uint64(b[pageHeader+32:]),
				pgid:     binary.LittleEndian.Uint64(b[pageHeader+40:]),
			}
		}
	}
	if !found {
		return metaPage{}, errors.New("no meta page is valid")
	}
	return best, nil
}

// checkFileForOpen reads what bbolt.Open reads of the file at path, its
// meta pages and its freelist, from the file itself. It refuses a file
// whose newest valid meta page counts more pages than the file holds, or
// whose freelist does not lie within them: opening, bbolt would read past
// the end of its map, and a fault recovered there left bbolt's descriptor,
// lock and map behind (a second Open in the process then said "in use").
// A file with no valid meta page at any page size is left to bbolt, which
// refuses it itself.
func checkFileForOpen(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	for _, ps := range []int64{int64(os.Getpagesize()), 4096, 16384, 65536} {
		if st.Size() < 2*ps {
			continue
		}
		w := &pageWalker{f: f, size: ps, pages: uint64(st.Size() / ps), seen: map[uint64]bool{}}
		m, err := w.meta()
		if err != nil || m.pageSize != uint64(ps) {
			continue
		}
		if m.pgid > w.pages {
			return fmt.Errorf("%w: %s is %d bytes, but its pages reach %d: it was cut short", ErrFileDamaged, path, st.Size(), m.pgid*uint64(ps))
		}
		w.pages = m.pgid
		if m.freelist != noFreelist {
			if err := w.freelist(m.freelist); err != nil {
				return fmt.Errorf("%w: %s: %w", ErrFileDamaged, path, err)
			}
		}
		return nil
	}
	return nil
}

// header reads page id's header and checks that it names id, ends within
// the file and has one of the flags in want; it returns its flags, its
// element count and its size in bytes (overflow pages included).
func (w *pageWalker) header(id uint64, want uint16) (flags uint16, count int, span int64, err error) {
	if id < 2 || id >= w.pages {
		return 0, 0, 0, fmt.Errorf("page %d is outside the file's pages (2 to %d)", id, w.pages-1)
	}
	b, err := w.read(int64(id)*w.size, pageHeader)
	if err != nil {
		return 0, 0, 0, err
	}
	if got := binary.LittleEndian.Uint64(b); got != id {
		return 0, 0, 0, fmt.Errorf("page %d says it is page %d", id, got)
	}
	flags = binary.LittleEndian.Uint16(b[8:])
	if flags != branchPage && flags != leafPage && flags != freePage || flags&want == 0 {
		return 0, 0, 0, fmt.Errorf("page %d has flags %#x, want %#x", id, flags, want)
	}
	overflow := uint64(binary.LittleEndian.Uint32(b[12:]))
	if overflow >= w.pages-id {
		return 0, 0, 0, fmt.Errorf("page %d runs %d pages past its own, beyond the file's %d", id, overflow, w.pages)
	}
	return flags, int(binary.LittleEndian.Uint16(b[10:])), int64(overflow+1) * w.size, nil
}

// freelist checks the freelist page: its ids must lie within it.
func (w *pageWalker) freelist(id uint64) error {
	_, count, span, err := w.header(id, freePage)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	n, start := int64(count), int64(pageHeader)
	if count == 0xffff {
		b, err := w.read(int64(id)*w.size+pageHeader, 8)
		if err != nil {
			return err
		}
		n, start = int64(binary.LittleEndian.Uint64(b)), pageHeader+8
	}
	if n < 0 || n > (span-start)/8 {
		return fmt.Errorf("freelist page %d lists %d pages, more than it holds", id, n)
	}
	return nil
}

// walk checks page id, a branch or leaf of a bucket, and what it leads to.
func (w *pageWalker) walk(id uint64, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("page %d is %d levels deep: the tree loops", id, depth)
	}
	if w.seen[id] {
		return fmt.Errorf("page %d is reached twice", id)
	}
	w.seen[id] = true
	flags, count, span, err := w.header(id, branchPage|leafPage)
	if err != nil {
		return err
	}
	if int64(count)*elemSize > span-pageHeader {
		return fmt.Errorf("page %d holds %d elements, more than fit", id, count)
	}
	off := int64(id) * w.size
	els, err := w.read(off+pageHeader, int64(count)*elemSize)
	if err != nil {
		return err
	}
	if flags == branchPage {
		for i := range count {
			e := els[i*elemSize:]
			at := pageHeader + int64(i)*elemSize
			pos, ksize := int64(binary.LittleEndian.Uint32(e)), int64(binary.LittleEndian.Uint32(e[4:]))
			if at+pos+ksize > span {
				return fmt.Errorf("page %d: element %d lies past the page", id, i)
			}
			if err := w.walk(binary.LittleEndian.Uint64(e[8:]), depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return w.leaf(id, off, span, count, els, depth)
}

// leaf checks the elements of a leaf page (at file offset base, span bytes
// long) and the buckets they hold.
func (w *pageWalker) leaf(id uint64, base, span int64, count int, els []byte, depth int) error {
	for i := range count {
		e := els[i*elemSize:]
		at := pageHeader + int64(i)*elemSize
		flags := binary.LittleEndian.Uint32(e)
		pos, ksize, vsize := int64(binary.LittleEndian.Uint32(e[4:])), int64(binary.LittleEndian.Uint32(e[8:])), int64(binary.LittleEndian.Uint32(e[12:]))
		if at+pos+ksize+vsize > span {
			return fmt.Errorf("page %d: element %d lies past the page", id, i)
		}
		if flags&bucketLeaf == 0 {
			continue
		}
		if vsize < 16 {
			return fmt.Errorf("page %d: bucket %d has a %d-byte header", id, i, vsize)
		}
		v, err := w.read(base+at+pos+ksize, vsize)
		if err != nil {
			return err
		}
		if root := binary.LittleEndian.Uint64(v); root != 0 {
			if err := w.walk(root, depth+1); err != nil {
				return err
			}
			continue
		}
		// An inline bucket: a leaf page of its own inside the value.
		in := v[16:]
		if len(in) < pageHeader {
			return fmt.Errorf("page %d: inline bucket %d is cut short", id, i)
		}
		n := int(binary.LittleEndian.Uint16(in[10:]))
		if binary.LittleEndian.Uint16(in[8:])&leafPage == 0 || pageHeader+n*elemSize > len(in) {
			return fmt.Errorf("page %d: inline bucket %d is damaged", id, i)
		}
		if err := w.inline(id, in, n); err != nil {
			return err
		}
	}
	return nil
}

// inline checks the elements of an inline bucket's page, in (its bytes);
// such a bucket holds no buckets.
func (w *pageWalker) inline(id uint64, in []byte, n int) error {
	for i := range n {
		e := in[pageHeader+i*elemSize:]
		at := int64(pageHeader + i*elemSize)
		pos, ksize, vsize := int64(binary.LittleEndian.Uint32(e[4:])), int64(binary.LittleEndian.Uint32(e[8:])), int64(binary.LittleEndian.Uint32(e[12:]))
		if at+pos+ksize+vsize > int64(len(in)) {
			return fmt.Errorf("page %d: an element of an inline bucket lies past it", id)
		}
		if binary.LittleEndian.Uint32(e)&bucketLeaf != 0 {
			return fmt.Errorf("page %d: an inline bucket holds a bucket", id)
		}
	}
	return nil
}
