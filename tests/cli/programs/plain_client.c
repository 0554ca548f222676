/* The textbook TCP client. Usage: plain_client ADDRESS PORT [write].
 * Connects and prints "connected". Then, by default, blocks in read() forever;
 * with `write`, waits for a line on stdin and then writes 4 KiB blocks without
 * end. Either way, when a call fails it prints "error ERRNO NAME" and exits 3
 * (end of stream: "eof", exit 4). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(void) {
    int err = errno;
    printf("error %d %s\n", err, strerror(err));
    fflush(stdout);
    return 3;
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: plain_client ADDRESS PORT [write]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[2]));
    if (fd < 0 || inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1 ||
        connect(fd, (struct sockaddr*)&addr, sizeof(addr)) != 0)
        return fail();
    printf("connected\n");
    fflush(stdout);
    char block[4096];
    if (argc > 3 && strcmp(argv[3], "write") == 0) {
        if (fgets(block, sizeof(block), stdin) == NULL) return 2;
        memset(block, 'x', sizeof(block));
        for (;;)
            if (write(fd, block, sizeof(block)) < 0) return fail();
    }
    for (;;) {
        ssize_t n = read(fd, block, sizeof(block));
        if (n < 0) return fail();
        if (n == 0) {
            printf("eof\n");
            fflush(stdout);
            return 4;
        }
    }
}
