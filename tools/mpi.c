/*
 * mpi.c - the CLI's communicator (imcap_comm) over OpenMPI. MPI starts only
 * when the process was launched by mpirun (OMPI_COMM_WORLD_SIZE in the
 * environment); otherwise, or in a build without MPI, the tool runs as one
 * process exactly as before (imcap_comm_self()).
 */
#include "cli.h"
#include "internal.h"

#include <limits.h>
#include <stdlib.h>

#ifdef IMCAP_MPI
#include <mpi.h>

static imcap_comm g_comm;
static int g_started;

static imcap_status mpi_status(int rc, const char *what, size_t bytes)
{
    if (rc == MPI_SUCCESS) return IMCAP_OK;
    char err[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, err, &len);
    return imcap_fail(IMCAP_E_IO, "MPI_%s of %zu bytes: %.*s", what, bytes, len, err);
}

static imcap_status too_big(const char *what, size_t bytes)
{
    return imcap_fail(IMCAP_E_UNSUPPORTED, "MPI_%s of %zu bytes per rank: more than %d", what, bytes, INT_MAX);
}

static imcap_status mpi_allgather(void *user, const void *send, void *recv, size_t bytes)
{
    (void)user;
    if (bytes > INT_MAX) return too_big("Allgather", bytes);
    return mpi_status(MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD),
                      "Allgather", bytes);
}

static imcap_status mpi_alltoall(void *user, const void *send, void *recv, size_t bytes)
{
    (void)user;
    if (bytes > INT_MAX) return too_big("Alltoall", bytes);
    return mpi_status(MPI_Alltoall(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD),
                      "Alltoall", bytes);
}

static imcap_status mpi_bcast(void *user, void *buf, size_t bytes, int root)
{
    (void)user;
    if (bytes > INT_MAX) return too_big("Bcast", bytes);
    return mpi_status(MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD), "Bcast", bytes);
}

static imcap_status mpi_barrier(void *user)
{
    (void)user;
    return mpi_status(MPI_Barrier(MPI_COMM_WORLD), "Barrier", 0);
}

static void mpi_abort(void *user, imcap_status s, const char *msg)
{
    (void)user;
    fprintf(stderr, "imcap: %s; stopping every rank\n", msg);
    MPI_Abort(MPI_COMM_WORLD, s ? (int)s : 1);
}

int cli_comm_start(int *argc, char ***argv)
{
    if (!getenv("OMPI_COMM_WORLD_SIZE")) return 0;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) {
        fprintf(stderr, "imcap: MPI_Init failed\n");
        return 1;
    }
    /* errors come back as codes, so that the library can name what failed */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    g_started = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_comm.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_comm.size);
    g_comm.allgather = mpi_allgather;
    g_comm.alltoall = mpi_alltoall;
    g_comm.bcast = mpi_bcast;
    g_comm.barrier = mpi_barrier;
    g_comm.abort = mpi_abort;
    return 0;
}

const imcap_comm *cli_comm(void) { return g_started ? &g_comm : imcap_comm_self(); }

void cli_comm_end(int rc)
{
    if (!g_started) return;
    g_started = 0;
    MPI_Finalize();
    (void)rc;
}

#else

int cli_comm_start(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (!getenv("OMPI_COMM_WORLD_SIZE")) return 0;
    fprintf(stderr, "imcap: launched by mpirun, but this build has no MPI (install libopenmpi-dev and rebuild)\n");
    return 1;
}

const imcap_comm *cli_comm(void) { return imcap_comm_self(); }

void cli_comm_end(int rc) { (void)rc; }

#endif
