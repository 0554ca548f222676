/* The textbook TCP server: accept, turn on SO_KEEPALIVE (and nothing else),
 * never read. Only the kernel can notice a peer that vanishes, and with the
 * default sysctls it takes 7200 s + 9 x 75 s. Used by the protect/reap tests,
 * built dynamically and -static. With IDLE INTVL CNT it stands for a program
 * that chose its own keepalive timings: it sets TCP_KEEPIDLE, TCP_KEEPINTVL
 * and TCP_KEEPCNT after accept (the run test: those must stay).
 * Usage: plain_server ADDRESS PORT [IDLE INTVL CNT]. Prints "listening" and
 * "accepted FD" lines. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char** argv) {
    if (argc != 3 && argc != 6) {
        fprintf(stderr, "usage: plain_server ADDRESS PORT [IDLE INTVL CNT]\n");
        return 2;
    }
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[2]));
    if (listener < 0 || inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1 ||
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(listener, (struct sockaddr*)&addr, sizeof(addr)) != 0 || listen(listener, 16) != 0) {
        perror("plain_server: listen");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) {
            perror("plain_server: accept");
            return 1;
        }
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        if (argc == 6) {
            int idle = atoi(argv[3]), intvl = atoi(argv[4]), cnt = atoi(argv[5]);
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
        }
        printf("accepted %d\n", fd);
        fflush(stdout);
    }
}
