// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * progress.c - the monitor thread. It sleeps in epoll on the kernel objects that tell when
 * something happens outside any library call: a peer's descriptor closing (hang-up), the
 * application closing an endpoint with close(2), a connection request reaching a listener,
 * a non-blocking connect's answer, a control message. It knows only the endpoint table: what
 * an event on a link or a listen socket means, the connection layer says
 * (scif__monitor_handle).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "atomic.h"
#include "epd.h"
#include "log.h"

/* mon_lock serialises event dispatch (monitor thread, scif__monitor_poll_now) and start-up. */
static pthread_mutex_t mon_lock = PTHREAD_MUTEX_INITIALIZER;
static int mon_epfd = -1;
static int mon_running; /* cleared in a fork() child: the thread did not come along */

static uint64_t mon_key(const struct scif_endpt *ep, int kind)
{
	return ((uint64_t)ep->gen << 32) | ((uint64_t)(uint32_t)ep->fd << 2) | (uint64_t)kind;
}

/* What the layers above do with an event on each kind of watch (scif__monitor_handle). */
static scif_watch_fn mon_fn[4];

void scif__monitor_handle(int kind, scif_watch_fn fn)
{
	mon_fn[kind & 3] = fn;
}

static void mon_dispatch(const struct epoll_event *ev)
{
	uint32_t gen = (uint32_t)(ev->data.u64 >> 32);
	int fd = (int)((uint32_t)ev->data.u64 >> 2);
	int kind = (int)(ev->data.u64 & 3);
	struct scif_endpt *ep = scif__epd_get(fd);

	if (!ep)
		return;
	if (ep->gen != gen) /* the descriptor number was reused: stale event */
		goto out;
	if (kind == SCIF_WATCH_BELL) {
		/*
		 * Every copy of the application's descriptor is gone: close(2), exit or exec.
		 * After a disconnect the bell is shut down by us, and only EPOLLERR means that.
		 */
		if ((ev->events & EPOLLERR) ||
		    ((ev->events & (EPOLLRDHUP | EPOLLHUP)) &&
		     !scif__load_acquire(&ep->bell_shut))) {
			scif_dbg("endpoint %d closed without scif_close", fd);
			scif__monitor_unwatch(ep->bell.fd);
			scif__epd_unpublish(ep);
		}
	} else if (mon_fn[kind]) {
		mon_fn[kind](ep, ev->events);
	}
out:
	scif__epd_put(ep);
}

static void *mon_thread(void *arg)
{
	struct epoll_event evs[64];
	int epfd = (int)(intptr_t)arg;

	for (;;) {
		int n = epoll_wait(epfd, evs, 64, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			scif_err("monitor: epoll_wait: %s", strerror(errno));
			return NULL;
		}
		pthread_mutex_lock(&mon_lock);
		for (int i = 0; i < n; i++)
			mon_dispatch(&evs[i]);
		pthread_mutex_unlock(&mon_lock);
	}
	return NULL;
}

void scif__monitor_poll_now(void)
{
	struct epoll_event evs[64];
	int n;

	if (scif__monitor_ensure())
		return;
	pthread_mutex_lock(&mon_lock);
	n = epoll_wait(mon_epfd, evs, 64, 0);
	for (int i = 0; i < n; i++)
		mon_dispatch(&evs[i]);
	pthread_mutex_unlock(&mon_lock);
}

static int mon_ctl(int op, int fd, uint64_t key, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.u64 = key };

	return epoll_ctl(mon_epfd, op, fd, &ev) < 0 ? -errno : 0;
}

/* Set while scif__monitor_ensure re-registers every endpoint (it holds mon_lock then). */
static __thread int mon_rewatching;

int scif__monitor_watch(struct scif_endpt *ep, int kind, int fd, uint32_t events)
{
	int ret = mon_rewatching ? 0 : scif__monitor_ensure();

	if (ret)
		return ret;
	ret = mon_ctl(EPOLL_CTL_ADD, fd, mon_key(ep, kind), events);
	if (ret == -EEXIST)
		ret = mon_ctl(EPOLL_CTL_MOD, fd, mon_key(ep, kind), events);
	/* Out of epoll watches (max_user_watches) or memory: resources either way. */
	return ret == -ENOSPC ? -ENOMEM : ret;
}

void scif__monitor_unwatch(int fd)
{
	if (fd >= 0 && mon_epfd >= 0)
		epoll_ctl(mon_epfd, EPOLL_CTL_DEL, fd, NULL);
}

void scif__monitor_rekey(struct scif_endpt *ep)
{
	if (scif__monitor_ensure() == 0)
		scif__epd_rewatch(ep);
}

int scif__monitor_ensure(void)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t th;
	int ret = 0, rewatch;

	if (__builtin_expect(scif__load_acquire(&mon_running), 1))
		return 0;
	pthread_mutex_lock(&mon_lock);
	if (mon_running)
		goto out;
	rewatch = mon_epfd == -2; /* set by the fork handler */
	mon_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (mon_epfd < 0) {
		ret = -errno;
		mon_epfd = -1;
		goto out;
	}
	if (rewatch) {
		mon_rewatching = 1;
		scif__epd_foreach(scif__epd_rewatch);
		mon_rewatching = 0;
	}
	/* The monitor takes no signals: the application's handlers run in its own threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 << 10);
	ret = -pthread_create(&th, &attr, mon_thread, (void *)(intptr_t)mon_epfd);
	if (ret == -EAGAIN) /* no thread to be had: a resource (spec: ENOMEM) */
		ret = -ENOMEM;
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		close(mon_epfd);
		mon_epfd = -1;
		goto out;
	}
	scif__store_release(&mon_running, 1);
out:
	pthread_mutex_unlock(&mon_lock);
	return ret;
}

static void atfork_prepare(void)
{
	pthread_mutex_lock(&mon_lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&mon_lock);
}

static void atfork_child(void)
{
	/* The parent's epoll instance is shared with it: leave it, start our own on demand. */
	if (mon_running) {
		close(mon_epfd);
		mon_epfd = -2;
		mon_running = 0;
	}
	pthread_mutex_unlock(&mon_lock);
}

void scif__monitor_setup(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}
