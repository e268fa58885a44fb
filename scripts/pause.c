/*
 * pause: a minimal sandbox ("infra") container process for cni2cnm's tests.
 *
 * Sleeps forever in pause(), reaps any child that exits (so it can be PID 1 of a
 * container), and exits with status 0 on SIGTERM or SIGINT.
 *
 * Build: gcc -Os -static -s -o pause pause.c
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_terminate(int sig)
{
	(void)sig;
	_exit(0);
}

static void on_child(int sig)
{
	int saved_errno = errno;

	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved_errno;
}

static int install(int sig, void (*handler)(int), int flags)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv)
{
	static const char version[] = "cni2cnm-test-pause 1\n";

	if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
		if (write(STDOUT_FILENO, version, sizeof(version) - 1) < 0)
			return 1;
		return 0;
	}
	if (install(SIGTERM, on_terminate, 0) != 0 ||
	    install(SIGINT, on_terminate, 0) != 0 ||
	    install(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART) != 0)
		return 1;
	for (;;)
		pause();
	return 0;
}
