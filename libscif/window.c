// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * window.c - windows and the registered address space. Registration turns the application's
 * pages into pages of the fabric's window memory (local: a sealed memfd) in place, once; after
 * that the same physical pages can be mapped by the peer, which is what makes RMA a single
 * memcpy and scif_mmap coherent. The fabric says what the memory is (mem_alloc: a file and a
 * range of it the core maps MAP_SHARED); moving the pages and finding them again is this
 * file's, the same on every fabric whose memory is a file.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "atomic.h"
#include "epd.h"
#include "log.h"
#include "procmap.h"
#include "scif.h"
#include "window.h"

#define PAGE 4096ULL

/*
 * The window memory of this process's own windows, in a search tree by file (device, inode)
 * and range in it (one memfd each on the local fabric; disjoint ranges of one aperture file
 * on a pcie fabric). A range registered again (or a part of one) that still maps such memory,
 * contiguously, shares its pages instead of being copied: the kernel says what is mapped there
 * now, so memory the application unmapped and mapped anew is never mistaken for the old
 * window's. Each window holds a reference; the last one gives the memory back to the fabric,
 * so nothing outlives the windows.
 */
struct backing {
	dev_t dev;
	ino_t ino;
	struct scif_mem mem; /* [mem.off, mem.off + mem.len) of the file (dev, ino) */
	unsigned int refs;
};

static pthread_mutex_t backing_lock = PTHREAD_MUTEX_INITIALIZER;
static void *backings; /* tsearch(3) root */

static int backing_cmp(const void *l, const void *r)
{
	const struct backing *x = l, *y = r;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	/* Ranges of one file never overlap: one that overlaps another is the one looked for. */
	if ((uint64_t)x->mem.off + x->mem.len <= (uint64_t)y->mem.off)
		return -1;
	return (uint64_t)x->mem.off >= (uint64_t)y->mem.off + y->mem.len;
}

const struct scif_mem *scif__backing_mem(const void *handle)
{
	return &((const struct backing *)handle)->mem;
}

void scif__backing_put(void *handle)
{
	struct backing *x = handle;

	if (!x)
		return;
	pthread_mutex_lock(&backing_lock);
	if (--x->refs == 0) {
		tdelete(x, &backings, backing_cmp);
		scif__fab.ops->mem_free(&x->mem);
		free(x);
	}
	pthread_mutex_unlock(&backing_lock);
}

/* Memory attributes of a mapping that registration must carry over (smaps VmFlags). */
enum {
	VMA_DONTFORK = 1 << 0,  /* dc: MADV_DONTFORK */
	VMA_DONTDUMP = 1 << 1,  /* dd: MADV_DONTDUMP */
	VMA_LOCKED = 1 << 2,    /* lo: mlock */
	VMA_LOCKONFAULT = 1 << 3, /* lf: mlock2(MLOCK_ONFAULT) */
	VMA_HUGEPAGE = 1 << 4,  /* hg: MADV_HUGEPAGE */
	VMA_NOHUGEPAGE = 1 << 5, /* nh: MADV_NOHUGEPAGE */
	VMA_SEQUENTIAL = 1 << 6, /* sr: MADV_SEQUENTIAL */
	VMA_RANDOM = 1 << 7,    /* rr: MADV_RANDOM */
};

struct vma {
	uintptr_t start, end;
	int prot;
	unsigned int page_shift; /* of a hugetlb mapping's pages; 0 for ordinary memory */
	int flags;               /* VMA_* */
	dev_t dev;               /* the mapped file, if any, and the range's offset in it */
	ino_t ino;
	uint64_t pgoff;
};

#define VMAS_MAX 64 /* mappings one registration may span */

static int vma_flags(char *list)
{
	static const struct {
		char name[3];
		int flag;
	} map[] = {
		{ "dc", VMA_DONTFORK },	   { "dd", VMA_DONTDUMP },   { "lo", VMA_LOCKED },
		{ "lf", VMA_LOCKONFAULT }, { "hg", VMA_HUGEPAGE },   { "nh", VMA_NOHUGEPAGE },
		{ "sr", VMA_SEQUENTIAL },  { "rr", VMA_RANDOM },
	};
	int flags = 0;
	char *save;

	for (char *t = strtok_r(list, " \n", &save); t; t = strtok_r(NULL, " \n", &save))
		for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
			if (!strcmp(t, map[i].name))
				flags |= map[i].flag;
	return flags;
}

/* The first line of a mapping in smaps starts with its address, in lower-case hex. */
static int smaps_is_header(const char *line)
{
	return (line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f');
}

static unsigned int log2_size(uint64_t size)
{
	unsigned int shift = 0;

	while (size > 1) {
		size >>= 1;
		shift++;
	}
	return shift;
}

/*
 * The mappings overlapping [a, b), from /proc/self/smaps, with their VmFlags (the advice and
 * locking the application gave them: smaps is the only place the kernel reports them).
 * Returns how many, or -errno. The kernel formats every mapping below @b for this, so the
 * cost grows with the mappings below the range (docs/architecture.md section 12).
 */
static int vmas_smaps(uintptr_t a, uintptr_t b, struct vma *v, int max)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	int n = 0, cur = -1;

	if (!f)
		return -ENOMEM;
	setvbuf(f, NULL, _IOFBF, 1 << 16); /* fewer, larger reads */
	while (fgets(line, sizeof(line), f)) {
		unsigned long long off = 0, ino = 0, kib;
		unsigned int maj = 0, mnr = 0;
		char *p, *q;
		uintptr_t s, e;

		if (!smaps_is_header(line)) {
			if (cur < 0)
				continue;
			if (line[0] == 'V' && !strncmp(line, "VmFlags:", 8)) {
				v[cur].flags = vma_flags(line + 8);
				cur = -1;
			} else if (line[0] == 'K' && sscanf(line, "KernelPageSize: %llu kB", &kib) == 1 &&
				   kib > PAGE / 1024) {
				v[cur].page_shift = log2_size(kib * 1024);
			}
			continue;
		}
		/* "start-end perms offset major:minor inode path" */
		s = (uintptr_t)strtoull(line, &p, 16);
		if (p == line || *p != '-')
			continue;
		e = (uintptr_t)strtoull(p + 1, &q, 16);
		if (q == p + 1 || *q != ' ')
			continue;
		/*
		 * Mappings come in address order: past the range, stop reading, so the kernel
		 * formats no more of them.
		 */
		if (s >= b)
			break;
		cur = -1;
		if (e <= a)
			continue;
		if (n == max) {
			n = -ENOMEM;
			break;
		}
		q++;
		v[n].start = s < a ? a : s;
		v[n].end = e > b ? b : e;
		v[n].prot = (q[0] == 'r' ? PROT_READ : 0) | (q[1] == 'w' ? PROT_WRITE : 0) |
			    (q[2] == 'x' ? PROT_EXEC : 0);
		v[n].page_shift = 0;
		v[n].flags = 0;
		v[n].dev = 0;
		v[n].ino = 0;
		v[n].pgoff = 0;
		if (sscanf(q, "%*s %llx %x:%x %llu", &off, &maj, &mnr, &ino) == 4) {
			v[n].dev = makedev(maj, mnr);
			v[n].ino = (ino_t)ino;
			v[n].pgoff = off + (v[n].start - s);
		}
		cur = n++;
	}
	fclose(f);
	return n;
}

/* PROCMAP_QUERY (Linux 6.11): procmap.h. */

/*
 * The mappings overlapping [a, b) through PROCMAP_QUERY: their geometry, protections and
 * files, O(log n) each, but not their VmFlags. Returns how many (stopping at the first
 * unmapped byte, which the caller's check reports), -ENOSYS if the kernel cannot answer
 * (older than 6.11: read smaps instead), or -errno.
 */
static int vmas_query(uintptr_t a, uintptr_t b, struct vma *v, int max)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC), n = 0;
	uintptr_t cur = a;

	if (fd < 0)
		return errno == ENOENT ? -ENOSYS : -ENOMEM; /* no procfs: smaps fails the same way */
	while (cur < b) {
		struct procmap_query_abi q = {
			.size = sizeof(q),
			.query_addr = cur,
		};

		if (ioctl(fd, PROCMAP_QUERY_IOCTL, &q) < 0) {
			if (errno == ENOENT)
				break; /* nothing mapped at @cur */
			n = errno == ENOTTY || errno == EINVAL ? -ENOSYS : -ENOMEM;
			break;
		}
		if (q.vma_start > cur || q.vma_end <= cur)
			break; /* not an answer about @cur: treat as unmapped */
		if (n == max) {
			n = -ENOMEM;
			break;
		}
		v[n].start = cur;
		v[n].end = q.vma_end > b ? b : (uintptr_t)q.vma_end;
		v[n].prot = (q.vma_flags & PROCMAP_VMA_READABLE ? PROT_READ : 0) |
			    (q.vma_flags & PROCMAP_VMA_WRITABLE ? PROT_WRITE : 0) |
			    (q.vma_flags & PROCMAP_VMA_EXECUTABLE ? PROT_EXEC : 0);
		v[n].page_shift = q.vma_page_size > PAGE ? log2_size(q.vma_page_size) : 0;
		v[n].flags = 0;
		v[n].dev = q.inode ? makedev(q.dev_major, q.dev_minor) : 0;
		v[n].ino = (ino_t)q.inode;
		v[n].pgoff = q.inode ? q.vma_offset + (cur - q.vma_start) : 0;
		cur = v[n++].end;
	}
	close(fd);
	return n;
}

/*
 * Every byte of [a, b) mapped, readable, and writable if the window is, by @n mappings in
 * order. Returns 0, or -EFAULT.
 */
static int vmas_check(const struct vma *v, int n, uintptr_t a, uintptr_t b, int need_write)
{
	uintptr_t cur = a;

	for (int i = 0; i < n; i++) {
		if (v[i].start != cur || !(v[i].prot & PROT_READ) ||
		    (need_write && !(v[i].prot & PROT_WRITE)))
			return -EFAULT;
		cur = v[i].end;
	}
	return n > 0 && cur == b ? 0 : -EFAULT;
}

/*
 * The mappings over [a, b) into @v (*n of them), from smaps (@smaps: with their advice) or
 * PROCMAP_QUERY, checked by vmas_check. 0, -ENOSYS (no PROCMAP_QUERY here), -ENOMEM, or
 * -EFAULT.
 */
static int vmas_read(uintptr_t a, uintptr_t b, struct vma *v, int need_write, int smaps, int *n)
{
	*n = smaps ? vmas_smaps(a, b, v, VMAS_MAX) : vmas_query(a, b, v, VMAS_MAX);
	if (*n == -ENOSYS || *n == -ENOMEM)
		return *n;
	return *n < 0 ? -EFAULT : vmas_check(v, *n, a, b, need_write);
}

/*
 * Give the new mapping of one vma the attributes the application's had. Shared memory
 * cannot be MADV_WIPEONFORK (docs/architecture.md section 12); everything else is kept.
 */
static int vma_restore(const struct vma *v)
{
	static const struct {
		int flag, advice;
	} adv[] = {
		{ VMA_DONTFORK, MADV_DONTFORK },   { VMA_DONTDUMP, MADV_DONTDUMP },
		{ VMA_HUGEPAGE, MADV_HUGEPAGE },   { VMA_NOHUGEPAGE, MADV_NOHUGEPAGE },
		{ VMA_SEQUENTIAL, MADV_SEQUENTIAL }, { VMA_RANDOM, MADV_RANDOM },
	};
	void *p = (void *)v->start;
	size_t len = v->end - v->start;

	for (size_t i = 0; i < sizeof(adv) / sizeof(adv[0]); i++)
		if ((v->flags & adv[i].flag) && madvise(p, len, adv[i].advice) < 0 &&
		    adv[i].flag != VMA_HUGEPAGE && adv[i].flag != VMA_NOHUGEPAGE)
			return -ENOMEM; /* THP advice does not apply to every file: best effort */
	if ((v->flags & VMA_LOCKONFAULT) && mlock2(p, len, MLOCK_ONFAULT) < 0)
		return errno == EAGAIN || errno == EPERM ? -ENOMEM : -errno;
	if ((v->flags & (VMA_LOCKED | VMA_LOCKONFAULT)) == VMA_LOCKED && mlock(p, len) < 0)
		return errno == EAGAIN || errno == EPERM ? -ENOMEM : -errno;
	return 0;
}

/*
 * Window memory of ours that maps all of [a, b) contiguously: its entry, with *foff set to
 * the range's offset in it.
 */
static struct backing *backing_find(const struct vma *v, int n, uintptr_t a, uintptr_t b,
				    off_t *foff)
{
	struct backing key = { .dev = v[0].dev, .ino = v[0].ino }, **x;
	uint64_t start = v[0].pgoff;

	for (int i = 0; i < n; i++)
		if (!v[i].ino || v[i].dev != v[0].dev || v[i].ino != v[0].ino ||
		    v[i].pgoff != v[0].pgoff + (v[i].start - a))
			return NULL;
	key.mem.off = (off_t)start;
	key.mem.len = b - a;
	x = tfind(&key, &backings, backing_cmp);
	if (!x || start < (uint64_t)(*x)->mem.off ||
	    start + (b - a) > (uint64_t)(*x)->mem.off + (*x)->mem.len)
		return NULL;
	*foff = (off_t)(start - (uint64_t)(*x)->mem.off);
	return *x;
}

/*
 * Whole pages of the application are copied, including bytes of them that are not the
 * application's to give (its allocator's bookkeeping, which AddressSanitizer poisons). Under
 * ASan the copy goes around its checks; otherwise it is memcpy.
 */
#if defined(__SANITIZE_ADDRESS__)
#define SCIF_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SCIF_UNDER_ASAN 1
#endif
#endif
#ifdef SCIF_UNDER_ASAN
__attribute__((no_sanitize_address)) static void copy_pages(void *dst, const void *src,
							     size_t len)
{
	/* volatile: the compiler must not turn the loop back into a (checked) memcpy call */
	const volatile uint64_t *s = src;
	uint64_t *d = dst;

	for (size_t i = 0; i < len / sizeof(*d); i++)
		d[i] = s[i];
}
#else
static inline void copy_pages(void *dst, const void *src, size_t len)
{
	memcpy(dst, src, len);
}
#endif

/* Whether the @len bytes at @p are all zero (reading around the sanitizer, as copy_pages). */
#ifdef SCIF_UNDER_ASAN
__attribute__((no_sanitize_address))
#endif
static int zero_bytes(const void *p, size_t len)
{
	const uint64_t *w = p;

	for (size_t i = 0; i < len / sizeof(*w); i += 8) {
		uint64_t x = w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] |
			     w[i + 7];

		if (x)
			return 0;
	}
	return 1;
}

/*
 * How registration moves a range's bytes into its window memory: the file range @m stands
 * for the range, which starts at @a.
 */
struct mover {
	const struct scif_mem *m;
	uintptr_t a;
	size_t chunk; /* bytes moved, then mapped, per step: a multiple of @unit */
	size_t unit;  /* the memory's page size: zero pages are found in these */
	int writable; /* the file takes write(2) (memfd, tmpfs); else copied through a mapping */
	int holes;    /* the file range reads as zeros: zero pages need not be copied */
};

/*
 * Copy @len bytes of the application's memory at @src into the file at @off. A write into
 * the file where it takes one (no page fault per page: twice as fast as a copy through a
 * mapping, and a full memory cgroup is an error, not a SIGBUS), through the raw system call
 * because the sanitizers' pwrite would check bytes that are not the application's to give
 * (see copy_pages). Files that take no writes (hugetlbfs, devices) are mapped. 0 or -ENOMEM.
 */
static int move_run(struct mover *mv, uintptr_t src, size_t len, off_t off)
{
	const uint8_t *b = (const uint8_t *)src;
	size_t left = len;
	void *p;

	while (mv->writable && left) {
		long n = syscall(SYS_pwrite64, mv->m->fd, b, left, off);

		if (n > 0) {
			b += n;
			off += n;
			left -= (size_t)n;
		} else if (n == 0 || (errno != EINTR && errno != EINVAL && errno != ENODEV &&
				      errno != ESPIPE && errno != EOPNOTSUPP)) {
			return -ENOMEM; /* out of memory or space */
		} else if (errno != EINTR) {
			mv->writable = 0; /* nothing was written: this file takes no writes */
		}
	}
	if (!left)
		return 0;
	p = mmap(NULL, left, PROT_READ | PROT_WRITE, MAP_SHARED, mv->m->fd, off);
	if (p == MAP_FAILED)
		return -ENOMEM;
	copy_pages(p, b, left);
	munmap(p, left);
	return 0;
}

/*
 * Put window memory where mapping @v of the application is, with its bytes. A chunk at a
 * time, the bytes go into the file and the file is mapped over them, which frees the
 * application's pages at once: registering takes one chunk of memory more, not twice the
 * range. Where the file reads as zeros, pages of zeros (fresh buffers) are not copied at all:
 * the file keeps holes there, and the memory they took is given back. 0, or -ENOMEM.
 */
static int vma_adopt(struct mover *mv, const struct vma *v)
{
	size_t len;

	for (uintptr_t s = v->start; s < v->end; s += len) {
		off_t off = mv->m->off + (off_t)(s - mv->a);
		uintptr_t run = s, e;
		int ret;

		len = v->end - s < mv->chunk ? v->end - s : mv->chunk;
		e = s + len;
		if (mv->holes) {
			/* Runs of pages with data between pages of zeros. */
			for (uintptr_t pg = s; pg < e; pg += mv->unit) {
				if (!zero_bytes((const void *)pg, mv->unit))
					continue;
				if (pg > run) {
					ret = move_run(mv, run, pg - run, off + (off_t)(run - s));
					if (ret)
						return ret;
				}
				run = pg + mv->unit;
			}
		}
		if (e > run) {
			ret = move_run(mv, run, e - run, off + (off_t)(run - s));
			if (ret)
				return ret;
		}
		if (mmap((void *)s, len, v->prot, MAP_SHARED | MAP_FIXED, mv->m->fd, off) == MAP_FAILED)
			return -ENOMEM;
	}
	return 0;
}

/* Whether the file reads as zeros over [off, off + len): no data there (a fresh memfd). */
static int file_is_hole(int fd, off_t off, size_t len)
{
	off_t d = lseek(fd, off, SEEK_DATA);

	return d < 0 ? errno == ENXIO : (uint64_t)d >= (uint64_t)off + len;
}

/* Chunks of registration's copy: large enough to make the system calls cheap. */
#define ADOPT_CHUNK (2ULL << 20)

/*
 * SCIF_REG_ADVICE=0: do not read smaps for fresh memory, so its advice and locking are not
 * carried over, and registration no longer costs a walk over every mapping below the range.
 */
static int reg_advice = 1;
static pthread_once_t reg_advice_once = PTHREAD_ONCE_INIT;

static void reg_advice_init(void)
{
	const char *v = getenv("SCIF_REG_ADVICE");

	reg_advice = !(v && !strcmp(v, "0"));
}

int scif__window_back(void *addr, size_t len, int need_write, off_t *foffp, void **handle)
{
	uintptr_t a = (uintptr_t)addr, b = a + len;
	struct backing *x = NULL;
	struct vma v[VMAS_MAX];
	int n, ret, have_flags = 0;
	unsigned int page_shift = 0;
	struct mover mv;
	struct stat st;

	pthread_once(&reg_advice_once, reg_advice_init);
	pthread_mutex_lock(&backing_lock);
	/*
	 * Where the range is and what maps it, from the kernel's tree of mappings; smaps only
	 * on kernels without PROCMAP_QUERY, or below for memory that is not a window's yet.
	 */
	ret = vmas_read(a, b, v, need_write, 0, &n);
	if (ret == -ENOSYS) {
		ret = vmas_read(a, b, v, need_write, 1, &n);
		have_flags = 1;
	}
	if (ret)
		goto out;
	/* Already a window's memory: share the pages. */
	x = backing_find(v, n, a, b, foffp);
	if (x) {
		x->refs++;
		*handle = x;
		ret = 0;
		goto out;
	}
	/* The application's own memory: its advice must be carried over, and only smaps has it. */
	if (!have_flags && reg_advice) {
		ret = vmas_read(a, b, v, need_write, 1, &n);
		if (ret)
			goto out;
	}
	for (int i = 0; i < n; i++)
		if (v[i].page_shift > page_shift)
			page_shift = v[i].page_shift;
	x = malloc(sizeof(*x));
	if (!x) {
		ret = -ENOMEM;
		goto out;
	}
	ret = scif__fab.ops->mem_alloc(&scif__fab, len, page_shift, &x->mem);
	if (ret) {
		free(x);
		x = NULL;
		goto out;
	}
	/* Out of memory or descriptors: all "resources" (spec 3.9). */
	ret = -ENOMEM;
	if (fstat(x->mem.fd, &st) < 0)
		goto out;
	/* Move the pages, mapping by mapping (a huge page is the least chunk of hugetlb memory). */
	mv = (struct mover){
		.m = &x->mem,
		.a = a,
		.unit = 1ULL << (page_shift ? page_shift : 12),
		.writable = 1,
		.holes = file_is_hole(x->mem.fd, x->mem.off, len),
	};
	mv.chunk = ADOPT_CHUNK > mv.unit ? ADOPT_CHUNK : mv.unit;
	for (int i = 0; i < n; i++) {
		ret = vma_adopt(&mv, &v[i]);
		if (!ret)
			ret = vma_restore(&v[i]);
		if (ret)
			goto out;
	}
	x->dev = st.st_dev;
	x->ino = st.st_ino;
	x->refs = 1;
	ret = -ENOMEM;
	if (!tsearch(x, &backings, backing_cmp))
		goto out;
	*handle = x;
	x = NULL;
	*foffp = 0;
	ret = 0;
out:
	pthread_mutex_unlock(&backing_lock);
	if (ret && x) {
		scif__fab.ops->mem_free(&x->mem);
		free(x);
	}
	return ret;
}

/*
 * Light readers of address spaces (window.h). Each thread that reads one gets a record, kept
 * in a list for the writers to look through, and freed when the thread exits.
 *
 * Who writes what: ras_reader::ras is written by its own thread only (an address space
 * before a light read, NULL after it) and read by writers; the list is changed under
 * readers_lock. The ordering: a reader does "store ras; compiler barrier; load writer" [R],
 * a writer "store writer; membarrier; load every ras" [W]. The membarrier puts a full barrier
 * into every running thread, so either the reader's load came after it and sees the writer's
 * store, or its store came before it and the writer sees the store. The reader's release of
 * its word pairs with the writer's acquire load of it: the reader's loads of the windows come
 * before the writer changes them. The writer's release of ras::writer pairs with the light
 * reader's acquire load of it: a reader that finds no writer sees what the last one did.
 */
struct ras_reader {
	struct scif_ras *ras;
	struct ras_reader *next, **pprev;
};

static pthread_mutex_t readers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ras_reader *readers;
static pthread_once_t readers_once = PTHREAD_ONCE_INIT;
static pthread_key_t reader_key;
static int light_ok;           /* set once (readers_once): this process may use membarrier */
/* initial-exec: 8 bytes of static TLS spare a call into the loader on every light read. */
static __thread struct ras_reader *my_reader __attribute__((tls_model("initial-exec")));
static struct scif_ras no_light; /* names nothing; its record's reads always take the lock */
static struct ras_reader locked_reader = { .ras = &no_light };

static void reader_unlink(struct ras_reader *r)
{
	*r->pprev = r->next;
	if (r->next)
		r->next->pprev = r->pprev;
}

static void reader_gone(void *arg)
{
	struct ras_reader *r = arg;

	pthread_mutex_lock(&readers_lock);
	reader_unlink(r);
	pthread_mutex_unlock(&readers_lock);
	free(r);
	my_reader = &locked_reader; /* a later destructor's RMA takes the lock */
}

static void readers_prepare(void)
{
	pthread_mutex_lock(&readers_lock);
}

static void readers_parent(void)
{
	pthread_mutex_unlock(&readers_lock);
}

/* The child has one thread: the others' records would make its writers wait forever. */
static void readers_child(void)
{
	struct ras_reader *r = readers, *mine = my_reader;

	readers = NULL;
	while (r) {
		struct ras_reader *next = r->next;

		if (r == mine) {
			r->next = NULL;
			r->pprev = &readers;
			readers = r;
		} else {
			free(r);
		}
		r = next;
	}
	pthread_mutex_unlock(&readers_lock);
}

static void readers_setup(void)
{
	/* Registered once for the process (a fork child inherits it); Linux 4.14 and later. */
	if (pthread_key_create(&reader_key, reader_gone))
		return;
	pthread_atfork(readers_prepare, readers_parent, readers_child);
	light_ok = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

static struct ras_reader *reader_new(void)
{
	struct ras_reader *r;

	pthread_once(&readers_once, readers_setup);
	if (!light_ok || !(r = calloc(1, sizeof(*r))))
		return &locked_reader;
	if (pthread_setspecific(reader_key, r)) {
		free(r);
		return &locked_reader;
	}
	pthread_mutex_lock(&readers_lock);
	r->next = readers;
	r->pprev = &readers;
	if (readers)
		readers->pprev = &r->next;
	readers = r;
	pthread_mutex_unlock(&readers_lock);
	my_reader = r;
	return r;
}

int scif__ras_try_light(struct scif_ras *ras)
{
	struct ras_reader *r = my_reader;

	if (__builtin_expect(!r, 0))
		r = reader_new();
	if (scif__read_once(&r->ras))
		return 0;
	scif__write_once(&r->ras, ras);
	/* [R]: the compiler keeps the store first; the writer's membarrier does the rest. */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	if (!scif__load_acquire(&ras->writer)) /* pairs with scif__ras_write_unlock */
		return 1;
	scif__store_release(&r->ras, NULL);
	return 0;
}

void scif__ras_light_unlock(void)
{
	scif__store_release(&my_reader->ras, NULL); /* pairs with ras_drain's load */
}

int scif__ras_read_lock(struct scif_ras *ras)
{
	if (scif__ras_try_light(ras))
		return 1;
	pthread_rwlock_rdlock(&ras->lock);
	return 0;
}

void scif__ras_read_unlock(struct scif_ras *ras, int light)
{
	if (light)
		scif__ras_light_unlock();
	else
		pthread_rwlock_unlock(&ras->lock);
}

/* [W]: wait until no other thread is inside a light read of @ras (writer flag raised). */
static void ras_drain(struct scif_ras *ras)
{
	struct ras_reader *mine = my_reader, *r;

	/* Under the lock: a reader listed later synchronises with it and sees the flag. */
	pthread_mutex_lock(&readers_lock);
	for (r = readers; r && r == mine; r = r->next)
		;
	if (r && syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0))
		syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0);
	for (; r; r = r->next) {
		if (r == mine)
			continue;
		for (unsigned int spins = 0; scif__load_acquire(&r->ras) == ras; spins++) {
			if (spins < 1000)
				scif__cpu_relax();
			else
				sched_yield(); /* the reader was preempted inside its copy */
		}
	}
	pthread_mutex_unlock(&readers_lock);
}

void scif__ras_write_lock(struct scif_ras *ras)
{
	pthread_rwlock_wrlock(&ras->lock);
	__atomic_store_n(&ras->writer, 1, __ATOMIC_SEQ_CST); /* [W] */
	ras_drain(ras);
}

void scif__ras_write_unlock(struct scif_ras *ras)
{
	scif__store_release(&ras->writer, 0); /* pairs with scif__ras_read_lock */
	pthread_rwlock_unlock(&ras->lock);
}

void scif__ras_init(struct scif_ras *ras)
{
	pthread_rwlockattr_t a;

	/* Copies hold the read side; unregistering must not starve behind a stream of them. */
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&ras->lock, &a);
	pthread_rwlockattr_destroy(&a);
	/* Atomic: a light reader that found this struct by a stale pointer may be reading it. */
	scif__write_once(&ras->writer, 0);
	memset(&ras->self, 0, sizeof(ras->self));
	memset(&ras->remote, 0, sizeof(ras->remote));
}

void scif__window_get(struct scif_window *w)
{
	scif__atomic_inc(&w->refs);
}

void scif__window_put(struct scif_window *w)
{
	if (scif__atomic_dec(&w->refs))
		return;
	if (w->backing) { /* ours */
		if (w->map)
			munmap(w->map, w->len);
		scif__backing_put(w->backing);
	} else if (w->map) { /* the peer's, imported: w->map is w->mem.addr */
		scif__fab.ops->mem_free(&w->mem);
	}
	free(w);
}

static void list_drop(struct scif_wlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		scif__window_put(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

void scif__ras_destroy(struct scif_ras *ras)
{
	scif__ras_write_lock(ras);
	list_drop(&ras->self);
	list_drop(&ras->remote);
	scif__ras_write_unlock(ras);
	pthread_rwlock_destroy(&ras->lock);
}

size_t scif__wl_find(const struct scif_wlist *l, uint64_t off)
{
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (l->v[mid]->offset + l->v[mid]->len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int scif__wl_insert(struct scif_wlist *l, struct scif_window *w)
{
	size_t i;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct scif_window **v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	i = scif__wl_find(l, w->offset);
	memmove(&l->v[i + 1], &l->v[i], (l->n - i) * sizeof(*l->v));
	l->v[i] = w;
	l->n++;
	return 0;
}

struct scif_window *scif__wl_remove(struct scif_wlist *l, size_t i)
{
	struct scif_window *w = l->v[i];

	memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof(*l->v));
	l->n--;
	return w;
}

int scif__wl_remove_win(struct scif_wlist *l, const struct scif_window *w)
{
	size_t i = scif__wl_find(l, w->offset);

	if (i == l->n || l->v[i] != w)
		return 0;
	scif__wl_remove(l, i);
	return 1;
}

static int overlaps(const struct scif_wlist *l, uint64_t off, uint64_t len)
{
	size_t i = scif__wl_find(l, off);

	return i < l->n && l->v[i]->offset < off + len;
}

int scif__ras_place(struct scif_ras *ras, uint64_t len, int fixed, uint64_t *offset)
{
	const struct scif_wlist *l = &ras->self;
	uint64_t cand;

	if (fixed)
		return overlaps(l, *offset, len) ? -EADDRINUSE : 0;
	/*
	 * Above every window in the library's range [SCIF_RAS_AUTO_BASE, SCIF_RAS_END): O(1),
	 * and 2^62 bytes of offsets last. Only once they are used up, the lowest gap that fits.
	 */
	cand = SCIF_RAS_AUTO_BASE;
	if (l->n && l->v[l->n - 1]->offset + l->v[l->n - 1]->len > cand)
		cand = l->v[l->n - 1]->offset + l->v[l->n - 1]->len;
	if (cand + len > SCIF_RAS_END || cand + len < cand) {
		cand = SCIF_RAS_AUTO_BASE;
		for (size_t i = scif__wl_find(l, cand); i < l->n; i++) {
			if (l->v[i]->offset >= cand + len)
				break;
			cand = l->v[i]->offset + l->v[i]->len;
		}
	}
	if (cand + len > SCIF_RAS_END || cand + len < cand)
		return -ENOMEM;
	*offset = cand;
	return 0;
}

int scif__ras_lookup(const struct scif_wlist *list, int64_t off, size_t len, int prot,
		     struct scif_seg *segs, int *nsegs)
{
	uint64_t cur = (uint64_t)off, end = (uint64_t)off + len;
	int n = 0, ret = 0;

	if (off < 0 || end < cur || end > SCIF_RAS_END)
		return -ENXIO;
	for (size_t i = scif__wl_find(list, cur); i < list->n && cur < end; i++) {
		struct scif_window *w = list->v[i];

		if (w->dead || w->offset > cur || n == SCIF_MAX_SEGS) {
			ret = -ENXIO; /* a gap */
			break;
		}
		if ((w->prot & prot) != prot) {
			ret = -EPERM;
			break;
		}
		uint64_t stop = w->offset + w->len < end ? w->offset + w->len : end;

		scif__window_get(w);
		segs[n].win = w;
		segs[n].woff = cur - w->offset;
		segs[n].addr = w->map ? w->map + segs[n].woff : NULL;
		segs[n].len = (size_t)(stop - cur);
		n++;
		cur = stop;
	}
	if (!ret && cur < end)
		ret = -ENXIO;
	if (ret) {
		scif__segs_put(segs, n);
		return ret;
	}
	*nsegs = n;
	return 0;
}

uint8_t *scif__ras_find(const struct scif_wlist *list, int64_t off, size_t len, int prot)
{
	uint64_t a = (uint64_t)off;
	size_t i = scif__wl_find(list, a);
	const struct scif_window *w;

	if (i == list->n)
		return NULL;
	w = list->v[i];
	if (w->dead || w->offset > a || len > w->len - (a - w->offset))
		return NULL;
	return (w->prot & prot) == prot && w->map ? w->map + (a - w->offset) : NULL;
}

void scif__segs_put(struct scif_seg *segs, int nsegs)
{
	for (int i = 0; i < nsegs; i++)
		scif__window_put(segs[i].win);
}
