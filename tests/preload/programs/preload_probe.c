/* Exercises every call liblifeline_preload wraps, on loopback, and says what
 * it did, for tests/preload/preload_log_test.cpp:
 *  - an IPv4 and (if the host has ::1) an IPv6 listener, a client connected
 *    to each and the accepted end: "accepted-keepalive IDLE INTVL CNT UT_MS";
 *  - a TCP socket that sets TCP_KEEPIDLE=77 before connecting: "own-idle N";
 *  - a connect to a port nobody listens on: "refused ERRNO" (errno kept);
 *  - sockets the library must leave alone: UDP (connected), a Unix listener;
 *  - at the end, "tcp-sockets N": how many TCP sockets it connected,
 *    accepted or listened on (one log line each). */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int tcp_sockets = 0;

static int get_int(int fd, int level, int name) {
    int v = -1;
    socklen_t len = sizeof(v);
    getsockopt(fd, level, name, &v, &len);
    return v;
}

/* Binds `fd` to the loopback of `family` on an ephemeral port, filling `addr`. */
static int bind_loopback(int fd, int family, struct sockaddr_storage* addr, socklen_t* len) {
    memset(addr, 0, sizeof(*addr));
    if (family == AF_INET) {
        struct sockaddr_in* a = (struct sockaddr_in*)addr;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        *len = sizeof(*a);
    } else {
        struct sockaddr_in6* a = (struct sockaddr_in6*)addr;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        *len = sizeof(*a);
    }
    if (bind(fd, (struct sockaddr*)addr, *len) != 0) return -1;
    return getsockname(fd, (struct sockaddr*)addr, len);
}

/* Listener, client and accepted end on one family; returns the listener, or -1. */
static int pair_on(int family, int* client) {
    struct sockaddr_storage addr;
    socklen_t len = 0;
    int listener = socket(family, SOCK_STREAM, 0);
    if (listener < 0 || bind_loopback(listener, family, &addr, &len) != 0 || listen(listener, 8) != 0) return -1;
    ++tcp_sockets;
    *client = socket(family, SOCK_STREAM, 0);
    if (connect(*client, (struct sockaddr*)&addr, len) != 0) return -1;
    ++tcp_sockets;
    int accepted = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (accepted < 0) return -1;
    ++tcp_sockets;
    printf("accepted-keepalive %s %d %d %d %d\n", family == AF_INET ? "ipv4" : "ipv6",
           get_int(accepted, IPPROTO_TCP, TCP_KEEPIDLE), get_int(accepted, IPPROTO_TCP, TCP_KEEPINTVL),
           get_int(accepted, IPPROTO_TCP, TCP_KEEPCNT), get_int(accepted, IPPROTO_TCP, TCP_USER_TIMEOUT));
    return listener;
}

static void own_choice(int listener) {
    struct sockaddr_storage addr;
    socklen_t len = sizeof(addr);
    getsockname(listener, (struct sockaddr*)&addr, &len);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int idle = 77;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    if (connect(fd, (struct sockaddr*)&addr, len) == 0) ++tcp_sockets;
    int accepted = accept(listener, NULL, NULL);
    if (accepted >= 0) ++tcp_sockets;
    printf("own-idle %d\n", get_int(fd, IPPROTO_TCP, TCP_KEEPIDLE));
}

static void refused(void) {
    struct sockaddr_storage addr;
    socklen_t len = 0;
    int closed = socket(AF_INET, SOCK_STREAM, 0); /* Bound, never listening: connects are refused. */
    bind_loopback(closed, AF_INET, &addr, &len);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int rc = connect(fd, (struct sockaddr*)&addr, len);
    int err = errno;
    ++tcp_sockets;
    printf("refused %d %d\n", rc, err);
}

static void left_alone(void) {
    struct sockaddr_in to = {0};
    to.sin_family = AF_INET;
    to.sin_port = htons(9);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    connect(udp, (struct sockaddr*)&to, sizeof(to));
    struct sockaddr_un path = {0};
    path.sun_family = AF_UNIX;
    snprintf(path.sun_path, sizeof(path.sun_path), "/tmp/preload_probe.%d", (int)getpid());
    int unix_listener = socket(AF_UNIX, SOCK_STREAM, 0);
    if (bind(unix_listener, (struct sockaddr*)&path, sizeof(path)) == 0) listen(unix_listener, 1);
    unlink(path.sun_path);
}

int main(void) {
    int client4 = -1, client6 = -1;
    int listener4 = pair_on(AF_INET, &client4);
    if (listener4 < 0) {
        perror("preload_probe: ipv4");
        return 1;
    }
    if (pair_on(AF_INET6, &client6) < 0) printf("no-ipv6\n");
    own_choice(listener4);
    refused();
    left_alone();
    printf("tcp-sockets %d\n", tcp_sockets);
    return 0;
}
