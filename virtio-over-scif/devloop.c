// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * devloop.c - the loop of a device thread, the same in both frameworks (host.c, card.c): it
 * waits on the command eventfd, the device connection, the fds the device watches and its
 * timers, hands each to the framework's callbacks, turns a failed op into a reset, and keeps
 * the device's status line. Also the eventfd helpers both frameworks use.
 */
#include <errno.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "internal.h"

void vos_wake(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		vos_log(LOG_ERR, "eventfd write: %s", strerror(errno));
}

void vos_drain(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		vos_log(LOG_ERR, "eventfd read: %s", strerror(errno));
}

int vos_devloop_init(struct vos_devloop *l, const struct vos_devloop_ops *ops, void *dev,
		     const char *name, pthread_mutex_t *lock, int status_fd)
{
	memset(l, 0, sizeof(*l));
	l->ops = ops;
	l->dev = dev;
	l->name = name;
	l->lock = lock;
	l->status_fd = status_fd;
	l->conn.epd = -1;
	l->cmd_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	return l->cmd_fd < 0 ? -errno : 0;
}

void vos_devloop_destroy(struct vos_devloop *l)
{
	if (l->cmd_fd >= 0)
		close(l->cmd_fd);
	l->cmd_fd = -1;
}

static int devloop_find_watch(const struct vos_devloop *l, int fd)
{
	for (unsigned i = 0; i < l->nwatch; i++)
		if (l->watch[i].fd == fd)
			return (int)i;
	return -1;
}

int vos_devloop_watch(struct vos_devloop *l, int fd, short events, bool always)
{
	int i = devloop_find_watch(l, fd);

	if (!events) {
		if (i >= 0)
			l->watch[i] = l->watch[--l->nwatch];
		return 0;
	}
	if (fd < 0)
		return -EBADF;
	if (i < 0) {
		if (l->nwatch == VOS_WATCH_MAX)
			return -ENOSPC;
		i = (int)l->nwatch++;
	}
	l->watch[i] = (struct vos_watch){ .fd = fd, .events = events, .always = always };
	return 0;
}

void vos_devloop_set_tick(struct vos_devloop *l, unsigned ms)
{
	l->tick_ms = ms;
	l->next_tick = vos_now_ms() + ms;
}

bool vos_devloop_failed(struct vos_devloop *l, int r, const char *op)
{
	int err = r < 0 ? r : l->err;
	char why[200];

	if (!err)
		return false;
	if (l->conn.epd >= 0) {
		snprintf(why, sizeof(why), "%s: %s", op, strerror(-err));
		l->ops->reset(l->dev, why);
	} else {
		vos_log(LOG_WARNING, "%s: %s: %s", l->name, op, strerror(-err));
	}
	l->err = 0;
	return true;
}

void vos_devloop_publish(struct vos_devloop *l, char *line)
{
	bool changed;

	for (char *s = line; *s; s++)
		if (*s == '\n' || *s == '\r')
			*s = ' ';
	pthread_mutex_lock(l->lock);
	changed = strcmp(line, l->status) != 0;
	if (changed)
		snprintf(l->status, sizeof(l->status), "%s", line);
	pthread_mutex_unlock(l->lock);
	if (changed)
		vos_wake(l->status_fd);
	l->next_status = vos_now_ms() + VOS_STATUS_REFRESH_MS;
}

static void devloop_conn_event(struct vos_devloop *l, short revents)
{
	struct vos_msg m;
	int r = 0;

	if (revents & POLLOUT)
		r = vos_conn_flush(&l->conn);
	/* Read what came (also after POLLHUP: a message may precede the close). */
	while (r >= 0 && l->conn.epd >= 0 && (r = vos_conn_recv(&l->conn, &m)) > 0)
		l->ops->message(l->dev, &m);
	if (r < 0 && l->conn.epd >= 0)
		l->ops->conn_lost(l->dev, r);
}

void vos_devloop_run(struct vos_devloop *l)
{
	const struct vos_devloop_ops *ops = l->ops;
	struct pollfd pfd[2 + VOS_WATCH_MAX];

	for (;;) {
		uint64_t now = vos_now_ms(), until = l->next_status;
		bool started = ops->started(l->dev);
		unsigned n = 0, nw;
		int timeout;

		pfd[n++] = (struct pollfd){ .fd = l->cmd_fd, .events = POLLIN };
		if (l->conn.epd >= 0)
			pfd[n++] = (struct pollfd){ .fd = l->conn.epd,
						    .events = vos_conn_events(&l->conn) };
		nw = n;
		for (unsigned i = 0; i < l->nwatch; i++)
			if (started || l->watch[i].always)
				pfd[n++] = (struct pollfd){ .fd = l->watch[i].fd,
							    .events = l->watch[i].events };
		if (l->tick_ms && l->next_tick < until)
			until = l->next_tick;
		if (l->retry_at && l->retry_at < until)
			until = l->retry_at;
		timeout = until > now ? (int)(until - now) : 0;
		if (poll(pfd, n, timeout) < 0 && errno != EINTR) {
			vos_log(LOG_ERR, "%s: poll: %s", l->name, strerror(errno));
			usleep(100000);
			continue;
		}
		if (pfd[0].revents) {
			vos_drain(l->cmd_fd);
			if (!ops->commands(l->dev))
				return;
		}
		if (nw == 2 && pfd[1].revents && l->conn.epd == pfd[1].fd)
			devloop_conn_event(l, pfd[1].revents);
		for (unsigned i = nw; i < n; i++) {
			int w = devloop_find_watch(l, pfd[i].fd);

			/* An earlier event may have dropped the watch or stopped the device. */
			if (!pfd[i].revents || w < 0 ||
			    !(ops->started(l->dev) || l->watch[w].always))
				continue;
			vos_devloop_failed(l, ops->event(l->dev, pfd[i].fd, pfd[i].revents),
					   "event");
		}
		now = vos_now_ms();
		if (l->tick_ms && now >= l->next_tick) {
			l->next_tick = now + l->tick_ms;
			vos_devloop_failed(l, ops->tick(l->dev), "tick");
		}
		if (l->retry_at && now >= l->retry_at)
			ops->retry(l->dev);
		if (now >= l->next_status)
			ops->publish(l->dev);
	}
}
