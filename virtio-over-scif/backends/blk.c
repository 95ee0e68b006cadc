// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * backends/blk.c - host side of virtio-blk: requests from the card's queue become pread/pwrite,
 * fdatasync and fallocate on an image file or block device. Data streams between the image and
 * the card's buffers through one bounce buffer, so a request may be as large as the card likes.
 * Options: image=PATH (required), ro, size=BYTES[K|M|G|T] (the image must be that large),
 * serial=STRING (VIRTIO_BLK_T_GET_ID, at most 20 bytes).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>

#include "vos.h"

#define BLK_SECTOR 512u
#define BLK_BOUNCE (1u << 20)             /* bytes moved per copy; also the segment size max */
#define BLK_SEG_MAX (VOS_REQ_SEGS - 2)    /* data segments: the chain also holds header, status */
#define BLK_DISCARD_SECTORS (1u << 22)    /* per discard / write-zeroes segment: 2 GiB */
#define BLK_DISCARD_SEGS 32u              /* segments per discard / write-zeroes request */
#define BLK_DISCARD_ALIGN 8u              /* sectors: 4 KiB, the file system's hole granularity */

struct blk_be {
	int fd;
	bool ro;
	bool dirty;                       /* the image may hold data not yet synced */
	char *path;
	uint64_t size;                    /* bytes served: capacity * 512 */
	uint64_t capacity;                /* 512-byte sectors */
	uint8_t *bounce;                  /* BLK_BOUNCE bytes */
	char serial[VIRTIO_BLK_ID_BYTES];
	uint64_t reads, writes, flushes, discards, errors;
	struct vos_req req;               /* the request being served (too large for the stack) */
};

/* "123", "64K", "256M", "2G", "1T": bytes, or -EINVAL. */
static int blk_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned shift = 0;

	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	switch (*end) {
	case 'T': case 't': shift += 10; /* fall through */
	case 'G': case 'g': shift += 10; /* fall through */
	case 'M': case 'm': shift += 10; /* fall through */
	case 'K': case 'k': shift += 10; end++; break;
	default: break;
	}
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

/* "ro" and "ro=1|yes|true" are true; "ro=0|no|false" is false. */
static int blk_parse_flag(const char *v, bool *out)
{
	if (!v)
		*out = false;
	else if (!*v || !strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "true"))
		*out = true;
	else if (!strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "false"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

static int blk_check_keys(struct vos_hdev *d, const struct vos_devconf *c)
{
	static const char *const known[] = { "image", "ro", "size", "serial" };

	for (unsigned i = 0; i < c->nkv; i++) {
		unsigned k = 0;
		while (k < sizeof(known) / sizeof(known[0]) && strcmp(c->kv[i].key, known[k]))
			k++;
		if (k == sizeof(known) / sizeof(known[0])) {
			vos_log(LOG_ERR, "%s: unknown block option '%s'", vos_hdev_name(d),
				c->kv[i].key);
			return -EINVAL;
		}
	}
	return 0;
}

/* Size in bytes of a regular file or block device. */
static int blk_image_size(int fd, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
		return 0;
	}
	if (S_ISBLK(st.st_mode))
		return ioctl(fd, BLKGETSIZE64, size) < 0 ? -errno : 0;
	return -EINVAL;
}

static void blk_free(struct blk_be *b)
{
	if (b->fd >= 0)
		close(b->fd);
	free(b->bounce);
	free(b->path);
	free(b);
}

static int blk_set_config(struct vos_hdev *d, const struct blk_be *b)
{
	struct virtio_blk_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.capacity = htole64(b->capacity);
	cfg.size_max = htole32(BLK_BOUNCE);
	cfg.seg_max = htole32(BLK_SEG_MAX);
	cfg.blk_size = htole32(BLK_SECTOR);
	cfg.max_discard_sectors = htole32(BLK_DISCARD_SECTORS);
	cfg.max_discard_seg = htole32(BLK_DISCARD_SEGS);
	cfg.discard_sector_alignment = htole32(BLK_DISCARD_ALIGN);
	cfg.max_write_zeroes_sectors = htole32(BLK_DISCARD_SECTORS);
	cfg.max_write_zeroes_seg = htole32(BLK_DISCARD_SEGS);
	cfg.write_zeroes_may_unmap = 1;
	return vos_hdev_set_config(d, &cfg, sizeof(cfg));
}

static int blk_open(struct vos_hdev *d, const struct vos_devconf *c)
{
	const char *image = vos_conf_get(c, "image");
	const char *size = vos_conf_get(c, "size");
	const char *serial = vos_conf_get(c, "serial");
	uint64_t want = 0, features;
	struct blk_be *b;
	int ret;

	ret = blk_check_keys(d, c);
	if (ret < 0)
		return ret;
	if (!image || !*image) {
		vos_log(LOG_ERR, "%s: block device needs image=PATH", vos_hdev_name(d));
		return -EINVAL;
	}
	if ((size && blk_parse_size(size, &want) < 0) ||
	    (serial && strlen(serial) > VIRTIO_BLK_ID_BYTES)) {
		vos_log(LOG_ERR, "%s: bad size= or serial= (at most %u bytes)", vos_hdev_name(d),
			VIRTIO_BLK_ID_BYTES);
		return -EINVAL;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->fd = -1;
	if (blk_parse_flag(vos_conf_get(c, "ro"), &b->ro) < 0) {
		vos_log(LOG_ERR, "%s: bad ro= value", vos_hdev_name(d));
		ret = -EINVAL;
		goto fail;
	}
	b->path = strdup(image);
	b->bounce = malloc(BLK_BOUNCE);
	if (!b->path || !b->bounce) {
		ret = -ENOMEM;
		goto fail;
	}
	b->fd = open(image, (b->ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (b->fd < 0) {
		ret = -errno;
		vos_log(LOG_ERR, "%s: %s: %s", vos_hdev_name(d), image, strerror(-ret));
		goto fail;
	}
	/* Two writers on one image corrupt it: a second daemon (or a reload race) is refused. */
	if (flock(b->fd, (b->ro ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		ret = -errno;
		vos_log(LOG_ERR, "%s: %s is in use: %s", vos_hdev_name(d), image, strerror(-ret));
		goto fail;
	}
	ret = blk_image_size(b->fd, &b->size);
	if (ret < 0) {
		vos_log(LOG_ERR, "%s: %s: not a file or block device", vos_hdev_name(d), image);
		goto fail;
	}
	if (size && b->size != want) {
		vos_log(LOG_ERR, "%s: %s has %" PRIu64 " bytes, not %" PRIu64, vos_hdev_name(d),
			image, b->size, want);
		ret = -EINVAL;
		goto fail;
	}
	if (b->size % BLK_SECTOR)
		vos_log(LOG_WARNING, "%s: %s: the last %" PRIu64 " bytes (not a sector) are "
			"not served", vos_hdev_name(d), image, b->size % BLK_SECTOR);
	/* Writes acknowledged by an earlier daemon may still be in the page cache only: the
	 * first flush syncs whatever we did or did not write. */
	b->dirty = !b->ro;
	b->capacity = b->size / BLK_SECTOR;
	b->size = b->capacity * BLK_SECTOR;
	if (serial)
		memcpy(b->serial, serial, strlen(serial));
	else
		snprintf(b->serial, sizeof(b->serial), "scif%d-blk%u", vos_hdev_card(d) % 1000000,
			 vos_hdev_index(d) % 1000u);

	features = 1ull << VIRTIO_BLK_F_SIZE_MAX | 1ull << VIRTIO_BLK_F_SEG_MAX |
		   1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH;
	features |= b->ro ? 1ull << VIRTIO_BLK_F_RO :
			    1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
	vos_hdev_set_features(d, features);
	ret = blk_set_config(d, b);
	if (ret < 0)
		goto fail;
	vos_hdev_set_priv(d, b);
	vos_log(LOG_INFO, "%s: %s, %" PRIu64 " bytes%s", vos_hdev_name(d), image, b->size,
		b->ro ? ", read-only" : "");
	return 0;
fail:
	blk_free(b);
	return ret;
}

/* Log the 1st, 2nd, 4th, 8th... I/O error: a failing disk does not flood the log. */
static uint8_t blk_ioerr(struct vos_hdev *d, struct blk_be *b, const char *what, uint64_t off,
			 int err)
{
	b->errors++;
	if (!(b->errors & (b->errors - 1)))
		vos_log(LOG_ERR, "%s: %s at byte %" PRIu64 " of %s: %s (%" PRIu64 " errors)",
			vos_hdev_name(d), what, off, b->path, strerror(err), b->errors);
	return VIRTIO_BLK_S_IOERR;
}

/* Is [sector, sector + bytes / 512) inside the image? bytes is a multiple of 512. */
static bool blk_in_range(const struct blk_be *b, uint64_t sector, uint64_t bytes)
{
	return sector <= b->capacity && bytes / BLK_SECTOR <= b->capacity - sector;
}

/*
 * VIRTIO_BLK_T_IN / T_OUT: `len` data bytes at `off` in the image, from/to the data part of the
 * request (writable part for IN, readable part after the header for OUT). Returns a virtio
 * status, or -errno when the connection to the card failed.
 */
static int blk_rw(struct vos_hdev *d, struct blk_be *b, const struct vos_req *r, bool write,
		  uint64_t off, size_t len)
{
	for (size_t done = 0; done < len;) {
		size_t n = len - done < BLK_BOUNCE ? len - done : BLK_BOUNCE;
		ssize_t got;

		if (write) {
			got = vos_req_read(d, r, sizeof(struct virtio_blk_outhdr) + done, b->bounce,
					   n);
			if (got < 0)
				return (int)got;
			if ((size_t)got != n)
				return -EBADMSG;
			for (size_t i = 0; i < n; i += (size_t)got) {
				got = pwrite(b->fd, b->bounce + i, n - i, (off_t)(off + done + i));
				if (got < 0 && errno == EINTR)
					got = 0;
				else if (got <= 0)
					return blk_ioerr(d, b, "write", off + done + i,
							 got < 0 ? errno : ENOSPC);
			}
			b->dirty = true;
		} else {
			for (size_t i = 0; i < n; i += (size_t)got) {
				got = pread(b->fd, b->bounce + i, n - i, (off_t)(off + done + i));
				if (got < 0 && errno == EINTR)
					got = 0;
				else if (got <= 0)    /* 0: the image shrank under us */
					return blk_ioerr(d, b, "read", off + done + i,
							 got < 0 ? errno : EIO);
			}
			got = vos_req_write(d, r, done, b->bounce, n);
			if (got < 0)
				return (int)got;
			if ((size_t)got != n)
				return -EBADMSG;
		}
		done += n;
	}
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_flush(struct vos_hdev *d, struct blk_be *b)
{
	if (b->dirty && fdatasync(b->fd) < 0)
		return blk_ioerr(d, b, "fdatasync", 0, errno);
	b->dirty = false;
	return VIRTIO_BLK_S_OK;
}

/* Zero [off, off + len): unmapping if allowed, else allocated zeroes, else written zeroes. */
static uint8_t blk_zero(struct vos_hdev *d, struct blk_be *b, uint64_t off, uint64_t len,
			bool unmap)
{
	if (unmap && !fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
				(off_t)len))
		return VIRTIO_BLK_S_OK;
	if (!fallocate(b->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return VIRTIO_BLK_S_OK;
	if (errno != EOPNOTSUPP && errno != EINVAL && errno != ENODEV)
		return blk_ioerr(d, b, "fallocate", off, errno);
	memset(b->bounce, 0, BLK_BOUNCE);
	while (len) {
		size_t chunk = len < BLK_BOUNCE ? len : BLK_BOUNCE;
		ssize_t n = pwrite(b->fd, b->bounce, chunk, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return blk_ioerr(d, b, "write", off, n < 0 ? errno : ENOSPC);
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	b->dirty = true;
	return VIRTIO_BLK_S_OK;
}

/* VIRTIO_BLK_T_DISCARD / T_WRITE_ZEROES: a table of segments after the header. */
static int blk_discard(struct vos_hdev *d, struct blk_be *b, const struct vos_req *r,
		       bool zeroes)
{
	struct virtio_blk_discard_write_zeroes seg[BLK_DISCARD_SEGS];
	size_t len = r->out_len - sizeof(struct virtio_blk_outhdr);
	size_t n = len / sizeof(seg[0]);
	uint8_t st = VIRTIO_BLK_S_OK;
	ssize_t got;

	if (b->ro || !n || len % sizeof(seg[0]) || n > BLK_DISCARD_SEGS)
		return VIRTIO_BLK_S_IOERR;
	got = vos_req_read(d, r, sizeof(struct virtio_blk_outhdr), seg, len);
	if (got < 0)
		return (int)got;
	if ((size_t)got != len)
		return -EBADMSG;
	/* All segments are checked before any is applied: a bad request changes nothing. */
	for (size_t i = 0; i < n; i++) {
		uint64_t sector = le64toh(seg[i].sector);
		uint32_t num = le32toh(seg[i].num_sectors), flags = le32toh(seg[i].flags);

		if (flags & ~(zeroes ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0u))
			return VIRTIO_BLK_S_UNSUPP;
		if (num > BLK_DISCARD_SECTORS ||
		    !blk_in_range(b, sector, (uint64_t)num * BLK_SECTOR))
			return VIRTIO_BLK_S_IOERR;
	}
	for (size_t i = 0; i < n && st == VIRTIO_BLK_S_OK; i++) {
		uint64_t off = le64toh(seg[i].sector) * BLK_SECTOR;
		uint64_t bytes = (uint64_t)le32toh(seg[i].num_sectors) * BLK_SECTOR;

		if (!bytes)
			continue;
		if (zeroes) {
			st = blk_zero(d, b, off, bytes,
				      le32toh(seg[i].flags) & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
		} else if (fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
				     (off_t)bytes) < 0 && errno != EOPNOTSUPP) {
			/* Discard is a hint: a file system without holes just keeps the data. */
			st = blk_ioerr(d, b, "discard", off, errno);
		}
	}
	b->dirty = true;
	return st;
}

/* Serve one request: its status, or -errno (-EBADMSG: malformed, the device is reset). */
static int blk_serve(struct vos_hdev *d, struct blk_be *b, const struct vos_req *r)
{
	struct virtio_blk_outhdr hdr;
	size_t dlen;
	uint64_t sector;
	ssize_t got;

	/* The header is the readable part's first 16 bytes, the status the writable's last byte. */
	if (r->out_len < sizeof(hdr) || r->in_len < 1)
		return -EBADMSG;
	got = vos_req_read(d, r, 0, &hdr, sizeof(hdr));
	if (got < 0)
		return (int)got;
	if (got != sizeof(hdr))
		return -EBADMSG;
	sector = le64toh(hdr.sector);
	switch (le32toh(hdr.type)) {
	case VIRTIO_BLK_T_IN:
		b->reads++;
		dlen = r->in_len - 1;
		if (dlen % BLK_SECTOR || !blk_in_range(b, sector, dlen))
			return VIRTIO_BLK_S_IOERR;
		return blk_rw(d, b, r, false, sector * BLK_SECTOR, dlen);
	case VIRTIO_BLK_T_OUT:
		b->writes++;
		dlen = r->out_len - sizeof(hdr);
		if (b->ro || dlen % BLK_SECTOR || !blk_in_range(b, sector, dlen))
			return VIRTIO_BLK_S_IOERR;
		return blk_rw(d, b, r, true, sector * BLK_SECTOR, dlen);
	case VIRTIO_BLK_T_FLUSH:
		b->flushes++;
		return blk_flush(d, b);
	case VIRTIO_BLK_T_GET_ID:
		dlen = r->in_len - 1 < sizeof(b->serial) ? r->in_len - 1 : sizeof(b->serial);
		got = vos_req_write(d, r, 0, b->serial, dlen);
		return got < 0 ? (int)got : VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		b->discards++;
		return blk_discard(d, b, r, le32toh(hdr.type) == VIRTIO_BLK_T_WRITE_ZEROES);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

/* Nothing to set up per attach: the image stays open from open() to close(). */
static int blk_start(struct vos_hdev *d)
{
	(void)d;
	return 0;
}

static int blk_kick(struct vos_hdev *d, unsigned q)
{
	struct blk_be *b = vos_hdev_priv(d);
	struct vos_req *r = &b->req;
	unsigned batch = 0;
	int ret;

	/* No KICKs while we drain: the card adds to the ring, we look again before sleeping. */
	vos_hq_kicks(d, q, false);
	for (;;) {
		ret = vos_hq_pop(d, q, r);
		if (ret == 0) {
			ret = vos_hq_kicks(d, q, true);
			if (ret == 1)
				continue;
			break;
		}
		if (ret < 0)
			break;
		ret = blk_serve(d, b, r);
		if (ret < 0)
			break;
		uint8_t st = (uint8_t)ret;
		ssize_t got = vos_req_write(d, r, r->in_len - 1, &st, 1);
		if (got < 0) {
			ret = (int)got;
			break;
		}
		ret = vos_hq_push(d, q, r, r->in_len);
		if (ret < 0)
			break;
		/* Complete early requests while later ones are served: the card pipelines. */
		if (++batch % 8 == 0) {
			ret = vos_hq_notify(d, q);
			if (ret < 0)
				break;
		}
	}
	if (ret < 0) {
		if (ret == -EBADMSG)
			vos_log(LOG_ERR, "%s: malformed request (no header or status byte)",
				vos_hdev_name(d));
		vos_hq_notify(d, q);
		return ret;
	}
	return vos_hq_notify(d, q);
}

static void blk_sync(struct vos_hdev *d, struct blk_be *b)
{
	if (!b->ro)
		blk_flush(d, b);
}

static void blk_stop(struct vos_hdev *d, enum vos_stop_reason why)
{
	(void)why;
	blk_sync(d, vos_hdev_priv(d));
}

static void blk_close(struct vos_hdev *d)
{
	struct blk_be *b = vos_hdev_priv(d);

	if (!b)
		return;
	blk_sync(d, b);
	blk_free(b);
	vos_hdev_set_priv(d, NULL);
}

static void blk_status(struct vos_hdev *d, FILE *out)
{
	const struct blk_be *b = vos_hdev_priv(d);

	if (!b)
		return;
	fprintf(out, "image=%s size=%" PRIu64 " ro=%d reads=%" PRIu64 " writes=%" PRIu64
		" flushes=%" PRIu64 " errors=%" PRIu64 " discards=%" PRIu64, b->path, b->size,
		b->ro, b->reads, b->writes, b->flushes, b->errors, b->discards);
}

const struct vos_backend_ops vos_blk_backend = {
	.type = VIRTIO_ID_BLOCK,
	.name = "block",
	.nqueues = 1,
	.queue_max = 256,
	.open = blk_open,
	.start = blk_start,
	.kick = blk_kick,
	.stop = blk_stop,
	.close = blk_close,
	.status = blk_status,
};
