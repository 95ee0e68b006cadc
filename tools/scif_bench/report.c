// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * report.c - what scif_bench shows: the progress line, the aligned table, the summary of the
 * issue's targets, JSON and CSV for machines, and a hand-written log-log SVG plot.
 */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* ---- terminal --------------------------------------------------------------------------- */

void bench_progress(int done, int total, const char *test, size_t size)
{
	char sz[16];

	/* Only for a person watching: a redirected stderr gets no carriage-return noise. */
	if (!isatty(2))
		return;
	fprintf(stderr, "\r[%3d/%d] %-22s %6s ", done, total, test, bench_size_str(size, sz, sizeof(sz)));
	fflush(stderr);
}

void bench_progress_end(void)
{
	if (isatty(2))
		fprintf(stderr, "\r%60s\r", "");
}

const char *bench_size_str(size_t size, char *buf, size_t len)
{
	if (size >= (1u << 20) && !(size & ((1u << 20) - 1)))
		snprintf(buf, len, "%zuM", size >> 20);
	else if (size >= 1024 && !(size & 1023))
		snprintf(buf, len, "%zuK", size >> 10);
	else
		snprintf(buf, len, "%zu", size);
	return buf;
}

/* A ratio with its "x", or "-" when there is nothing to divide by. */
static const char *ratio(double v, int ok, char *buf, size_t len)
{
	if (!ok)
		snprintf(buf, len, "-");
	else if (v >= 1000)
		snprintf(buf, len, "%.0fx", v);
	else
		snprintf(buf, len, "%.3gx", v);
	return buf;
}

/* Three significant digits, without exponents for the ranges we print. */
static const char *num(double v, char *buf, size_t len)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else if (v >= 1000)
		snprintf(buf, len, "%.0f", v);
	else
		snprintf(buf, len, "%.3g", v);
	return buf;
}

static const char *unit(enum bench_kind k)
{
	return k == KIND_LAT ? "us" : "GB/s";
}

/*
 * Whether a latency row's best peer ran with the CPUs placed differently: its one-line round
 * trip, probed around the peer's run, against the point's own (rows of one line or less).
 */
int bench_peer_moved(const struct bench_result *r)
{
	double a = r->peer_line, b = r->pair_base;

	if (!r->peer || r->kind != KIND_LAT || r->size > BENCH_LINE - 8 || a <= 0 || b <= 0 ||
	    strcmp(r->baseline ? r->baseline : "", "line-pingpong"))
		return 0;
	return a > 1.5 * b || b > 1.5 * a;
}

const struct bench_result *bench_find(const struct bench *b, const char *test, size_t size)
{
	for (int i = 0; i < b->nres; i++)
		if (!strcmp(b->res[i].test, test) && b->res[i].size == size)
			return &b->res[i];
	return NULL;
}

void bench_print_table(FILE *f, const struct bench *b)
{
	char sz[16], a[24], p[24], c[24], d[24], e[24], g[24], h[24], k[24];
	const char *last = NULL;
	int peers = 0;

	for (int i = 0; i < b->nres; i++)
		peers |= b->res[i].peer != NULL;
	fprintf(f, "\nlatency: round trip, median and p99 in microseconds; bandwidth: GB/s (1e9 B/s); "
		   "clock: %s\n"
		   "ratio = SCIF / baseline; vs TCP = SCIF / TCP loopback%s (latency: lower is better, "
		   "bandwidth: higher is better)\n\n",
		bench_clock_name(), peers ? "; vs peer = SCIF / the best peer (--peers)" : "");
	fprintf(f, "%-20s %6s %10s %-4s %9s  %-14s %9s %8s %9s %8s", "test", "size", "SCIF", "",
		"p99", "baseline", "base", "ratio", "TCP", "vs TCP");
	if (peers)
		fprintf(f, "  %-14s %9s %8s", "peer", "figure", "vs peer");
	fputc('\n', f);
	for (int i = 0; i < b->nres; i++) {
		const struct bench_result *r = &b->res[i];

		if (r->is_baseline)
			continue;
		if (last && strcmp(last, r->test))
			fputc('\n', f);
		last = r->test;
		fprintf(f, "%-20s %6s %10s %-4s %9s  %-14s %9s %8s %9s %8s", r->test,
			bench_size_str(r->size, sz, sizeof(sz)), num(r->median, a, sizeof(a)),
			unit(r->kind), r->kind == KIND_LAT ? num(r->p99, p, sizeof(p)) : "",
			r->baseline ? r->baseline : "-", num(r->base, c, sizeof(c)),
			ratio(r->ratio, r->base > 0, d, sizeof(d)), num(r->tcp, e, sizeof(e)),
			ratio(r->tcp_ratio, r->tcp > 0, g, sizeof(g)));
		fputc(r->pair_spread > BENCH_PAIR_SPREAD_OK ? '~' : ' ', f);
		if (peers)
			fprintf(f, " %-14s %9s %8s%c", r->peer ? r->peer : "-",
				num(r->peer_val, h, sizeof(h)),
				ratio(r->peer_ratio, r->peer != NULL, k, sizeof(k)),
				bench_peer_moved(r) ? '!' : ' ');
		fprintf(f, "%s\n", r->mismatch ? "  DATA MISMATCH" : "");
	}
	fprintf(f, "\nbase: the baseline measured just before and after the point (the better of the two); "
		   "~: those two differed by more than %.2fx, the host moved the CPUs%s\n",
		BENCH_PAIR_SPREAD_OK,
		peers ? "; !: the peer ran with the CPUs placed otherwise (its one-line round trip "
			"differed by more than 1.5x)" : "");
	fprintf(f, "\nbaselines (same run, same sizes)\n%-20s %6s %10s %-4s %9s\n", "baseline",
		"size", "median", "", "p99");
	last = NULL;
	for (int i = 0; i < b->nres; i++) {
		const struct bench_result *r = &b->res[i];

		if (!r->is_baseline)
			continue;
		if (last && strcmp(last, r->test))
			fputc('\n', f);
		last = r->test;
		fprintf(f, "%-20s %6s %10s %-4s %9s%s\n", r->test, bench_size_str(r->size, sz, sizeof(sz)),
			num(r->median, a, sizeof(a)), unit(r->kind),
			r->kind == KIND_LAT ? num(r->p99, p, sizeof(p)) : "",
			r->mismatch ? "  DATA MISMATCH" : "");
	}
}

/* ---- the targets ---------------------------------------------------------------- */

enum { VS_BASE, VS_TCP, VS_TCP_INV, VS_PEER };

struct target {
	const char *what;
	const char *group; /* the best row of this group counts (RMA modes) */
	size_t size;
	int vs;
	int at_most; /* 1: figure <= limit; 0: figure >= limit */
	double limit;
	int peer; /* VS_PEER: the enum bench_base of the peer */
};

static const struct target targets[] = {
	{ "8 B send/recv round trip <= 2.0x one-line ping-pong",
	  "lat", 8, VS_BASE, 1, 2.0, BASE_NONE },
	{ "8 B round trip, receiver asleep <= 1.1x futex ping-pong",
	  "lat-sleep", 8, VS_BASE, 1, 1.1, BASE_NONE },
	{ "8 B scif_mmap round trip <= 1.2x one-line ping-pong",
	  "mmap-lat", 8, VS_BASE, 1, 1.2, BASE_NONE },
	{ "writeto bandwidth at 4 MiB >= 0.95x memcpy",
	  "rma-write", 4 << 20, VS_BASE, 0, 0.95, BASE_NONE },
	{ "writeto bandwidth at 64 KiB >= 0.95x memcpy",
	  "rma-write", 64 << 10, VS_BASE, 0, 0.95, BASE_NONE },
	{ "readfrom bandwidth at 4 MiB >= 0.95x memcpy",
	  "rma-read", 4 << 20, VS_BASE, 0, 0.95, BASE_NONE },
	{ "readfrom bandwidth at 64 KiB >= 0.95x memcpy",
	  "rma-read", 64 << 10, VS_BASE, 0, 0.95, BASE_NONE },
	{ "send/recv bandwidth at 4 MiB >= 0.90x memcpy",
	  "bw", 4 << 20, VS_BASE, 0, 0.90, BASE_NONE },
	{ "send/recv bandwidth at 64 KiB >= 0.45x memcpy",
	  "bw", 64 << 10, VS_BASE, 0, 0.45, BASE_NONE },
	{ "send/recv bandwidth at 4 MiB >= 4x TCP loopback",
	  "bw", 4 << 20, VS_TCP, 0, 4.0, BASE_NONE },
	{ "writeto bandwidth at 4 MiB >= 4x TCP loopback",
	  "rma-write", 4 << 20, VS_TCP, 0, 4.0, BASE_NONE },
	{ "8 B send/recv latency >= 100x lower than TCP",
	  "lat", 8, VS_TCP_INV, 0, 100.0, BASE_NONE },
	{ "8 B send/recv round trip <= 0.5x Open MPI vader", "lat", 8, VS_PEER, 1, 0.5,
	  BASE_OMPI_LAT },
	{ "send/recv bandwidth at 64 KiB >= 1.1x vader", "bw", 64 << 10, VS_PEER, 0, 1.1,
	  BASE_OMPI_BW },
	{ "send/recv bandwidth at 4 MiB >= 1.1x vader", "bw", 4 << 20, VS_PEER, 0, 1.1,
	  BASE_OMPI_BW },
};

#define NTARGETS ((int)(sizeof(targets) / sizeof(targets[0])))

/* The figure a target is judged on (best row of its group), or -1 when not measured. */
static double target_value(const struct bench *b, const struct target *t, const char **row)
{
	double best = -1;

	*row = NULL;
	for (int i = 0; i < b->nres; i++) {
		const struct bench_result *r = &b->res[i];
		double v;

		if (r->is_baseline || strcmp(r->group, t->group) || r->size != t->size)
			continue;
		if (t->vs == VS_PEER) {
			int k = bench_size_index(b, r->size);
			double pv = k >= 0 ? b->base[t->peer][k] : -1;

			v = pv > 0 ? r->median / pv : -1;
		} else if (t->vs == VS_BASE)
			v = r->base > 0 ? r->ratio : -1;
		else if (t->vs == VS_TCP)
			v = r->tcp > 0 ? r->tcp_ratio : -1;
		else
			v = r->tcp > 0 && r->median > 0 ? r->tcp / r->median : -1;
		if (v < 0)
			continue;
		/* For "at most" targets the smallest figure is the best one. */
		if (best < 0 || (t->at_most ? v < best : v > best)) {
			best = v;
			*row = r->test;
		}
	}
	return best;
}

static int target_met(const struct target *t, double v)
{
	return v >= 0 && (t->at_most ? v <= t->limit : v >= t->limit);
}

int bench_print_summary(FILE *f, const struct bench *b)
{
	int met = 0;

	fprintf(f, "\nsummary: the issue's targets (reported only; they do not change the exit code)\n");
	for (int i = 0; i < NTARGETS; i++) {
		const struct target *t = &targets[i];
		const char *row;
		double v = target_value(b, t, &row);

		if (v < 0) {
			fprintf(f, "  [ n/a  ] %-50s not measured in this run\n", t->what);
			continue;
		}
		const struct bench_result *r = bench_find(b, row, t->size);

		met += target_met(t, v);
		fprintf(f, "  [%s] %-50s %8.3fx  (%s", target_met(t, v) ? "  met " : "MISSED",
			t->what, v, row);
		if (r && t->vs == VS_BASE && r->pair_spread > BENCH_PAIR_SPREAD_OK)
			fprintf(f, "; CPUs moved during the point");
		if (r && t->vs == VS_PEER && t->peer == BASE_OMPI_LAT && r->peer_line > 0 &&
		    r->pair_base > 0 && r->baseline && !strcmp(r->baseline, "line-pingpong") &&
		    (r->peer_line > 1.5 * r->pair_base || r->pair_base > 1.5 * r->peer_line))
			fprintf(f, "; the peer ran with the CPUs placed otherwise: one line %.3g us "
				   "against %.3g us", r->peer_line, r->pair_base);
		fprintf(f, ")\n");
	}
	return met;
}

/* ---- JSON and CSV ----------------------------------------------------------------------- */

static FILE *open_out(const char *path)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;

	if (!f)
		fprintf(stderr, "scif_bench: %s: %s\n", path, strerror(errno));
	return f;
}

static int close_out(FILE *f, const char *path)
{
	int bad = ferror(f);

	if (f == stdout)
		bad |= fflush(f);
	else
		bad |= fclose(f);
	if (bad)
		fprintf(stderr, "scif_bench: writing %s failed\n", path);
	return bad ? -1 : 0;
}

/* A JSON number, or null for "not measured". */
static void jnum(FILE *f, const char *key, double v, int ok)
{
	if (ok)
		fprintf(f, ", \"%s\": %.6g", key, v);
	else
		fprintf(f, ", \"%s\": null", key);
}

int bench_write_json(const struct bench *b, const char *path)
{
	FILE *f = open_out(path);

	if (!f)
		return -1;
	fprintf(f, "{\n  \"tool\": \"scif_bench\",\n  \"mode\": \"%s\",\n  \"seconds_per_point\": %g,\n"
		   "  \"results\": [\n",
		b->o.spawned ? "spawned" : "client", b->o.duration);
	for (int i = 0; i < b->nres; i++) {
		const struct bench_result *r = &b->res[i];

		fprintf(f, "    {\"test\": \"%s\", \"size\": %zu, \"unit\": \"%s\", \"kind\": \"%s\"",
			r->test, r->size, unit(r->kind), r->kind == KIND_LAT ? "latency" : "bandwidth");
		jnum(f, "median", r->median, 1);
		jnum(f, "p99", r->p99, r->kind == KIND_LAT);
		fprintf(f, ", \"iterations\": %llu", (unsigned long long)r->iters);
		if (r->is_baseline || !r->baseline)
			fprintf(f, ", \"baseline\": null");
		else
			fprintf(f, ", \"baseline\": \"%s\"", r->baseline);
		jnum(f, "baseline_median", r->base, r->base > 0);
		jnum(f, "ratio", r->ratio, r->base > 0);
		jnum(f, "tcp_median", r->tcp, r->tcp > 0);
		jnum(f, "ratio_tcp", r->tcp_ratio, r->tcp > 0);
		if (r->peer)
			fprintf(f, ", \"peer\": \"%s\"", r->peer);
		else
			fprintf(f, ", \"peer\": null");
		jnum(f, "peer_median", r->peer_val, r->peer != NULL);
		jnum(f, "ratio_peer", r->peer_ratio, r->peer != NULL);
		jnum(f, "baseline_spread", r->pair_spread, r->pair_spread > 0);
		jnum(f, "peer_line_us", r->peer_line, r->peer_line > 0);
		fprintf(f, ", \"peer_placement_differs\": %s", bench_peer_moved(r) ? "true" : "false");
		fprintf(f, ", \"is_baseline\": %s, \"data_ok\": %s}%s\n", r->is_baseline ? "true" : "false",
			r->mismatch ? "false" : "true", i + 1 < b->nres ? "," : "");
	}
	fprintf(f, "  ],\n  \"targets\": [\n");
	for (int i = 0; i < NTARGETS; i++) {
		const char *row;
		double v = target_value(b, &targets[i], &row);

		fprintf(f, "    {\"target\": \"%s\", \"limit\": %g", targets[i].what, targets[i].limit);
		jnum(f, "value", v, v >= 0);
		fprintf(f, ", \"met\": %s}%s\n",
			v < 0 ? "null" : target_met(&targets[i], v) ? "true" : "false",
			i + 1 < NTARGETS ? "," : "");
	}
	fprintf(f, "  ]\n}\n");
	return close_out(f, path);
}

static void cnum(FILE *f, double v, int ok)
{
	if (ok)
		fprintf(f, ",%.6g", v);
	else
		fputc(',', f);
}

int bench_write_csv(const struct bench *b, const char *path)
{
	FILE *f = open_out(path);

	if (!f)
		return -1;
	fprintf(f, "test,size,unit,median,p99,iterations,baseline,baseline_median,ratio,tcp_median,"
		   "ratio_tcp,data_ok\n");
	for (int i = 0; i < b->nres; i++) {
		const struct bench_result *r = &b->res[i];

		fprintf(f, "%s,%zu,%s", r->test, r->size, unit(r->kind));
		cnum(f, r->median, 1);
		cnum(f, r->p99, r->kind == KIND_LAT);
		fprintf(f, ",%llu,%s", (unsigned long long)r->iters,
			r->is_baseline || !r->baseline ? "" : r->baseline);
		cnum(f, r->base, r->base > 0);
		cnum(f, r->ratio, r->base > 0);
		cnum(f, r->tcp, r->tcp > 0);
		cnum(f, r->tcp_ratio, r->tcp > 0);
		fprintf(f, ",%d\n", !r->mismatch);
	}
	return close_out(f, path);
}

/* ---- SVG plot --------------------------------------------------------------------------- */

#define W 960
#define H 600
#define ML 90  /* margins: room for tick labels left and below, legend right */
#define MR 250
#define MT 50
#define MB 70

struct series {
	const char *test, *label, *color;
	int dashed;
};

static const struct series plot_series[] = {
	{ "bw", "SCIF send/recv", "#1f77b4", 0 },
	{ "rma-write/sync-cpu", "SCIF writeto (sync, CPU)", "#d62728", 0 },
	{ "rma-read/sync-cpu", "SCIF readfrom (sync, CPU)", "#2ca02c", 0 },
	{ "rma-write/async-dma", "SCIF writeto (async, DMA)", "#ff7f0e", 0 },
	{ "rma-read/async-dma", "SCIF readfrom (async, DMA)", "#9467bd", 0 },
	{ "memcpy", "memcpy (baseline)", "#333333", 1 },
	{ "tcp-bw", "TCP loopback (baseline)", "#8c564b", 1 },
	{ "unix-bw", "Unix socket (baseline)", "#e377c2", 1 },
	{ "ompi-vader-bw", "Open MPI vader (peer)", "#17becf", 1 },
	{ "ucx-tag-bw", "UCX tag (peer)", "#bcbd22", 1 },
	{ "ucx-put-bw", "UCX put (peer)", "#7f7f7f", 1 },
};

#define NSERIES ((int)(sizeof(plot_series) / sizeof(plot_series[0])))

struct axes {
	double x0, x1, y0, y1; /* log10 of the data ranges */
};

static double px(const struct axes *a, double size)
{
	return ML + (log10(size) - a->x0) / (a->x1 - a->x0) * (W - ML - MR);
}

static double py(const struct axes *a, double v)
{
	return H - MB - (log10(v) - a->y0) / (a->y1 - a->y0) * (H - MT - MB);
}

static void svg_axes(FILE *f, const struct axes *a, size_t smin, size_t smax)
{
	char lbl[16];

	/* Horizontal grid and labels at every decade of GB/s, faint lines at 2x and 5x. */
	for (int d = (int)a->y0; d <= (int)a->y1; d++) {
		for (int m = 1; m <= 5; m += (m == 1 ? 1 : 3)) {
			double v = m * pow(10, d);
			double y;

			if (log10(v) > a->y1 + 1e-9)
				break;
			y = py(a, v);
			fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\"/>\n", ML,
				y, W - MR, y, m == 1 ? "#cccccc" : "#eeeeee");
			if (m == 1)
				fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", ML - 8,
					y + 4, v);
		}
	}
	/* Vertical grid and labels at powers of 4 bytes, the sweep's own steps. */
	for (size_t s = 1; s <= smax; s *= 4) {
		double x;

		if (s < smin)
			continue;
		x = px(a, (double)s);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#dddddd\"/>\n", x,
			MT, x, H - MB);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"black\"/>\n", x,
			H - MB, x, H - MB + 6);
		fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x, H - MB + 22,
			bench_size_str(s, lbl, sizeof(lbl)));
	}
	fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
		   "stroke=\"black\"/>\n", ML, MT, W - ML - MR, H - MT - MB);
	fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">transfer size (bytes)</text>\n",
		(ML + W - MR) / 2, H - 20);
	fprintf(f, "<text transform=\"translate(24 %d) rotate(-90)\" text-anchor=\"middle\">"
		   "bandwidth (GB/s, 1e9 bytes/s)</text>\n", (MT + H - MB) / 2);
	fprintf(f, "<text x=\"%d\" y=\"30\" text-anchor=\"middle\" font-size=\"17\">scif_bench: "
		   "bandwidth against transfer size (log-log)</text>\n", (ML + W - MR) / 2);
}

int bench_write_svg(const struct bench *b, const char *path)
{
	struct axes a;
	double vmin = INFINITY, vmax = 0;
	size_t smin = SIZE_MAX, smax = 0;
	int ly = MT + 10;
	FILE *f;

	for (int i = 0; i < b->nres; i++) {
		const struct bench_result *r = &b->res[i];

		if (r->kind != KIND_BW || r->median <= 0)
			continue;
		vmin = r->median < vmin ? r->median : vmin;
		vmax = r->median > vmax ? r->median : vmax;
		smin = r->size < smin ? r->size : smin;
		smax = r->size > smax ? r->size : smax;
	}
	if (vmax <= 0) {
		fprintf(stderr, "scif_bench: no bandwidth figures to plot\n");
		return -1;
	}
	a.x0 = log10((double)smin);
	a.x1 = log10((double)smax);
	if (a.x1 - a.x0 < 1) /* a single size still gets a readable axis */
		a.x1 = a.x0 + 1;
	a.y0 = floor(log10(vmin));
	a.y1 = ceil(log10(vmax));
	if (a.y1 - a.y0 < 1)
		a.y1 = a.y0 + 1;
	f = open_out(path);
	if (!f)
		return -1;
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		   "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"13\">\n"
		   "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H, W, H);
	svg_axes(f, &a, smin, smax);
	for (int s = 0; s < NSERIES; s++) {
		const struct series *sr = &plot_series[s];
		int n = 0;

		for (int i = 0; i < b->nres; i++) {
			const struct bench_result *r = &b->res[i];

			if (strcmp(r->test, sr->test) || r->median <= 0)
				continue;
			if (!n++)
				fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s "
					   "points=\"", sr->color,
					sr->dashed ? " stroke-dasharray=\"6 4\"" : "");
			fprintf(f, "%.1f,%.1f ", px(&a, (double)r->size), py(&a, r->median));
		}
		if (!n)
			continue;
		fprintf(f, "\"/>\n");
		for (int i = 0; i < b->nres; i++) {
			const struct bench_result *r = &b->res[i];

			if (!strcmp(r->test, sr->test) && r->median > 0)
				fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
					px(&a, (double)r->size), py(&a, r->median), sr->color);
		}
		/* Legend entry: a sample of the line and its name. */
		fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
			   "stroke-width=\"2\"%s/>\n<text x=\"%d\" y=\"%d\">%s</text>\n",
			W - MR + 15, ly, W - MR + 45, ly, sr->color,
			sr->dashed ? " stroke-dasharray=\"6 4\"" : "", W - MR + 52, ly + 4, sr->label);
		ly += 22;
	}
	fprintf(f, "</svg>\n");
	return close_out(f, path);
}
