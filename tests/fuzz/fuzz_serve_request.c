/* fuzz_serve_request.c - `imcap serve`'s request parsing (tools/serve_http.c
 * over libmicrohttpd): one server on a loopback port with the seed
 * generator's tiny captioner (build-fuzz/seeds/model.imcap); each input is
 * sent raw on a fresh connection (method, URL, headers, multipart or JSON
 * body: anything), the write side is closed and the answer read. */
#include "fuzz.h"
#include "serve.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

static int g_port;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    signal(SIGPIPE, SIG_IGN);
    const char *model = "build-fuzz/seeds/model.imcap";
    imcap_captioner *c;
    if (imcap_captioner_load(model, "build-fuzz/seeds/encoders/tiny.gguf", &c)) {
        fprintf(stderr, "fuzz_serve_request: %s\n", imcap_last_error());
        abort();
    }
    serve_config cfg = {.host = "127.0.0.1", .port = 0, .threads = 2, .queue = 8, .max_body = 1u << 20,
                        .max_images = 4, .timeout_s = 2, .request_timeout_s = 2, .drain_s = 1, .connections = 16,
                        .speech = imcap_speech_default_params()};
    serve_server *s = serve_start(&cfg, c, model);
    if (!s) abort();
    g_port = serve_port(s);
    return 0; /* the server lives as long as the process */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) abort();
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) abort();
    for (size_t done = 0; done < size;) {
        ssize_t n = send(fd, data + done, size - done, MSG_NOSIGNAL);
        if (n <= 0) break; /* the server may answer and close early */
        done += (size_t)n;
    }
    shutdown(fd, SHUT_WR);
    /* the answer: up to 300 ms for its first bytes (a tiny model captions in
     * about 1 ms; an incomplete request would wait for the server's timeout),
     * then until 20 ms pass without more (a kept-alive connection) */
    char buf[4096];
    for (int wait = 300;; wait = 20) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, wait) <= 0) break;
        if (recv(fd, buf, sizeof buf, 0) <= 0) break;
    }
    close(fd);
    return 0;
}
