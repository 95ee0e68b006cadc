// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * conf.c - device configuration: the daemon's config file and -d options, the card
 * frontend's -o options (both into struct vos_devconf), and the atomic status-file writer
 * the two programs share.
 *
 * Config file: one device per line, "card N TYPE [key=value|key]...", '#' starts a comment.
 * -d: "CARD:TYPE[:key=value[,key=value...]]". -o: "DEVn:key=value[,key=value...]".
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/virtio_ids.h>

#include "internal.h"

static const struct {
	const char *name;
	uint8_t type;
} types[] = {
	{ "net", VIRTIO_ID_NET },
	{ "block", VIRTIO_ID_BLOCK },
	{ "console", VIRTIO_ID_CONSOLE },
};

const char *vos_type_name(unsigned type)
{
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (types[i].type == type)
			return types[i].name;
	return NULL;
}

static int type_by_name(const char *s, size_t len)
{
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strlen(types[i].name) == len && !strncmp(types[i].name, s, len))
			return types[i].type;
	return -1;
}

const char *vos_conf_get(const struct vos_devconf *c, const char *key)
{
	for (unsigned i = 0; c && i < c->nkv; i++)
		if (!strcmp(c->kv[i].key, key))
			return c->kv[i].val;
	return NULL;
}

void vos_devconf_free(struct vos_devconf *d)
{
	for (unsigned i = 0; i < d->nkv; i++) {
		free(d->kv[i].key);
		free(d->kv[i].val);
	}
	d->nkv = 0;
}

void vos_conf_free(struct vos_config *c)
{
	for (size_t i = 0; i < c->ndev; i++)
		vos_devconf_free(&c->dev[i]);
	free(c->dev);
	c->dev = NULL;
	c->ndev = 0;
}

int vos_devconf_copy(struct vos_devconf *dst, const struct vos_devconf *src)
{
	*dst = *src;
	dst->nkv = 0;
	for (unsigned i = 0; i < src->nkv; i++) {
		char *k = strdup(src->kv[i].key), *v = strdup(src->kv[i].val);

		if (!k || !v) {
			free(k);
			free(v);
			vos_devconf_free(dst);
			return -ENOMEM;
		}
		dst->kv[i].key = k;
		dst->kv[i].val = v;
		dst->nkv = i + 1;
	}
	return 0;
}

bool vos_devconf_equal(const struct vos_devconf *a, const struct vos_devconf *b)
{
	if (a->card != b->card || a->type != b->type || a->index != b->index || a->nkv != b->nkv)
		return false;
	for (unsigned i = 0; i < a->nkv; i++) {
		const char *v = vos_conf_get(b, a->kv[i].key);

		if (!v || strcmp(v, a->kv[i].val))
			return false;
	}
	return true;
}

const struct vos_devconf *vos_conf_find(const struct vos_config *c, uint8_t type, unsigned index)
{
	for (size_t i = 0; c && i < c->ndev; i++)
		if (c->dev[i].type == type && c->dev[i].index == index)
			return &c->dev[i];
	return NULL;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Add "key[=value]" (@len bytes of @s) to @d; a key given twice takes the last value only
 * with @replace, else it is an error. Returns 0 or a message. */
static const char *kv_add(struct vos_devconf *d, const char *s, size_t len, bool replace)
{
	const char *eq = memchr(s, '=', len);
	size_t klen = eq ? (size_t)(eq - s) : len;
	char *k, *v;

	if (!klen)
		return "empty key";
	for (size_t i = 0; i < klen; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("_-.", s[i]))
			return "bad character in key";
	k = strndup(s, klen);
	v = eq ? strndup(eq + 1, len - klen - 1) : strdup("");
	if (!k || !v)
		goto nomem;
	for (unsigned i = 0; i < d->nkv; i++)
		if (!strcmp(d->kv[i].key, k)) {
			free(k);
			if (!replace) {
				free(v);
				return "key given twice";
			}
			free(d->kv[i].val);
			d->kv[i].val = v;
			return NULL;
		}
	if (d->nkv == VOS_CONF_KV_MAX) {
		free(k);
		free(v);
		return "too many options";
	}
	d->kv[d->nkv].key = k;
	d->kv[d->nkv++].val = v;
	return NULL;
nomem:
	free(k);
	free(v);
	return "out of memory";
}

static struct vos_devconf *conf_new(struct vos_config *c)
{
	struct vos_devconf *n = realloc(c->dev, (c->ndev + 1) * sizeof(*n));

	if (!n)
		return NULL;
	c->dev = n;
	memset(&n[c->ndev], 0, sizeof(*n));
	return &n[c->ndev++];
}

static const char *parse_card(const char *s, size_t len, int *card)
{
	unsigned long v = 0;

	if (!len || len > 5)
		return "bad card number";
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return "bad card number";
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return "card number must be 1..65535";
	*card = (int)v;
	return NULL;
}

/* A new entry *dp of @c: TYPE and CARD as @tlen and @clen bytes of text. NULL or a message. */
static const char *conf_add_dev(struct vos_config *c, const char *type, size_t tlen,
				const char *card, size_t clen, struct vos_devconf **dp)
{
	int t = type_by_name(type, tlen);

	if (t < 0)
		return "unknown device type (net, block or console)";
	*dp = conf_new(c);
	if (!*dp)
		return "out of memory";
	(*dp)->type = (uint8_t)t;
	return parse_card(card, clen, &(*dp)->card);
}

/* One config file line (comment and newline removed): NULL or a message. */
static const char *parse_line(struct vos_config *c, char *line)
{
	static const char *const ws = " \t\r";
	struct vos_devconf *d;
	char *save, *tok = strtok_r(line, ws, &save), *num, *type;
	const char *e;

	if (!tok)
		return NULL;
	if (strcmp(tok, "card"))
		return "expected \"card N TYPE [key=value]...\"";
	num = strtok_r(NULL, ws, &save);
	type = strtok_r(NULL, ws, &save);
	if (!num || !type)
		return "expected \"card N TYPE [key=value]...\"";
	if ((e = conf_add_dev(c, type, strlen(type), num, strlen(num), &d)))
		return e;
	while ((tok = strtok_r(NULL, ws, &save)))
		if ((e = kv_add(d, tok, strlen(tok), false)))
			return e;
	return NULL;
}

/* One -d spec: NULL or a message. */
static const char *parse_spec(struct vos_config *c, const char *s)
{
	const char *c1 = strchr(s, ':'), *c2, *e;
	struct vos_devconf *d;

	if (!c1)
		return "expected CARD:TYPE[:key=value[,key=value...]]";
	c2 = strchr(c1 + 1, ':');
	if ((e = conf_add_dev(c, c1 + 1, c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1), s,
			      (size_t)(c1 - s), &d)))
		return e;
	for (const char *p = c2 ? c2 + 1 : NULL; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if ((e = kv_add(d, p, len, false)))
			return e;
		p = end ? end + 1 : NULL;
	}
	return NULL;
}

int vos_conf_load(struct vos_config *c, const char *file, char *const *specs, size_t nspecs,
		  char *err, size_t errlen)
{
	char *line = NULL;
	size_t cap = 0;
	unsigned lineno = 0;
	const char *e = NULL;
	FILE *f = NULL;
	int ret = 0;

	memset(c, 0, sizeof(*c));
	if (file) {
		f = fopen(file, "re");
		if (!f) {
			ret = -errno;
			seterr(err, errlen, "%s: %s", file, strerror(errno));
			goto out;
		}
		while (getline(&line, &cap, f) >= 0) {
			char *hash = strchr(line, '#');

			lineno++;
			if (hash)
				*hash = '\0';
			line[strcspn(line, "\n")] = '\0';
			if ((e = parse_line(c, line))) {
				seterr(err, errlen, "%s:%u: %s", file, lineno, e);
				ret = -EINVAL;
				goto out;
			}
		}
		if (ferror(f)) {
			ret = -EIO;
			seterr(err, errlen, "%s: read error", file);
			goto out;
		}
	}
	for (size_t i = 0; i < nspecs; i++)
		if ((e = parse_spec(c, specs[i]))) {
			seterr(err, errlen, "-d %s: %s", specs[i], e);
			ret = -EINVAL;
			goto out;
		}
	/* Index = order of appearance per card and type. */
	for (size_t i = 0; i < c->ndev; i++)
		for (size_t j = 0; j < i; j++)
			if (c->dev[j].card == c->dev[i].card && c->dev[j].type == c->dev[i].type)
				c->dev[i].index++;
out:
	if (f)
		fclose(f);
	free(line);
	if (ret)
		vos_conf_free(c);
	return ret;
}

int vos_conf_add_opt(struct vos_config *c, const char *spec, char *err, size_t errlen)
{
	const char *colon = strchr(spec, ':'), *e = NULL;
	struct vos_devconf *d;
	size_t nlen;
	unsigned long idx;
	char *end;
	int t;

	if (!colon)
		goto bad;
	for (nlen = 0; spec + nlen < colon && isalpha((unsigned char)spec[nlen]); nlen++)
		;
	t = type_by_name(spec, nlen);
	if (t < 0 || !isdigit((unsigned char)spec[nlen]))
		goto bad;
	idx = strtoul(spec + nlen, &end, 10);
	if (end != colon || idx >= VOS_MAX_SLOTS)
		goto bad;
	d = (struct vos_devconf *)vos_conf_find(c, (uint8_t)t, (unsigned)idx);
	if (!d) {
		d = conf_new(c);
		if (!d) {
			seterr(err, errlen, "-o %s: out of memory", spec);
			return -ENOMEM;
		}
		d->type = (uint8_t)t;
		d->index = (unsigned)idx;
	}
	for (const char *p = colon + 1; *p && !e;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);

		e = kv_add(d, p, len, true);
		p = comma ? comma + 1 : p + len;
	}
	if (!e)
		return 0;
	seterr(err, errlen, "-o %s: %s", spec, e);
	return -EINVAL;
bad:
	seterr(err, errlen, "-o %s: expected DEV:key=value[,key=value...] (DEV like net0)", spec);
	return -EINVAL;
}

int vos_write_atomic(const char *path, void (*fill)(FILE *out, void *arg), void *arg)
{
	char tmp[4096];
	FILE *f;
	int ret = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fill(f, arg);
	if (fflush(f) || ferror(f))
		ret = -EIO;
	if (fclose(f) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}
