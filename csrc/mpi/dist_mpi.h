/* kdx over MPI: the collectives of kdx.dist (docs/distributed.md).
   Built only with MPI (make MPI=1, or when mpicc exists) into the separate
   Lua module kdx/dist_mpi.so; never part of libkdx.a or kdx/core.so.
   Ranks are 0-based (MPI's). Every function returns a kdx_status and sets
   the message with kdx_fail. */
#ifndef KDX_DIST_MPI_H
#define KDX_DIST_MPI_H

#include "kdx.h"

typedef enum kdx_dist_op { KDX_DIST_SUM, KDX_DIST_MEAN, KDX_DIST_MAX, KDX_DIST_MIN } kdx_dist_op;

/* Initialises MPI once (a second call does nothing). Errors: KDX_ESTATE. */
kdx_status kdx_dist_init(void);
/* Finalises MPI if this module initialised it and it is not finalised yet. */
kdx_status kdx_dist_finalize(void);
/* This process's rank in MPI_COMM_WORLD, 0-based (0 before init). */
int kdx_dist_rank(void);
/* Number of processes in MPI_COMM_WORLD (1 before init). */
int kdx_dist_size(void);
/* Blocks until every rank has called it. */
kdx_status kdx_dist_barrier(void);
/* t = op over ranks of t, in place (float32/float64). Contiguous tensors are
   reduced in their own storage (MPI_IN_PLACE); others through one copy. */
kdx_status kdx_dist_allreduce(kdx_tensor *t, kdx_dist_op op);
/* Each of the n tensors ts[i] = op over ranks of ts[i], in place, every
   reduction started at once (MPI_Iallreduce) and then waited for, so the
   messages overlap. The tensors must be contiguous float32/float64. */
kdx_status kdx_dist_allreduce_many(kdx_tensor *const *ts, int n, kdx_dist_op op);
/* t = root's t on every rank, in place (any dtype; same shape everywhere). */
kdx_status kdx_dist_broadcast(kdx_tensor *t, int root);
/* The ranks' tensors concatenated along dim 0, in rank order. The first dim
   may differ between ranks; the other dims and the dtype must agree.
   [out] *out: a new tensor. */
kdx_status kdx_dist_allgather(const kdx_tensor *t, kdx_tensor **out);

/* The sum over all processes kdx_batch_norm_sync needs (static: it outlives every graph). */
const kdx_sum *kdx_dist_sum(void);

/* ---- data-parallel gradient averaging ----
   A reducer holds a fixed list of parameters (one float dtype) in flat
   buckets of at most bucket_bytes, last parameters first. Per step:
   begin(rows) with this rank's row count; optionally backward(loss), which
   runs kdx_backward_hooked and, as each bucket's gradients become final,
   starts its allreduce while backward goes on (buckets start in bucket order
   on every rank, as MPI requires); then finish(extra) sends what is left
   (gradients computed some other way, missing ones as zeros) and the
   statistics -- per-parameter "has a gradient" flags, the row count and the
   caller's extra numbers, in float64 -- waits, and sets every gradient to
   sum over ranks (rows_r * grad_r) / sum rows_r: the gradient of the mean
   loss over the global batch. A parameter without a gradient on every rank
   keeps none. */
typedef struct kdx_dist_reducer kdx_dist_reducer;
/* A reducer for params[0..n-1] (retained). Errors: KDX_EDTYPE (not one float dtype), KDX_EINVAL. */
kdx_status kdx_dist_reducer_new(kdx_tensor *const *params, int n, int64_t bucket_bytes, kdx_dist_reducer **out);
/* Waits for any reduction in flight and frees the reducer (NULL: nothing). */
void kdx_dist_reducer_free(kdx_dist_reducer *r);
/* Starts a step in which this rank contributes `rows` rows (>= 0). */
kdx_status kdx_dist_reducer_begin(kdx_dist_reducer *r, double rows);
/* Backward from loss (a one-element tensor), sending buckets as they are ready. */
kdx_status kdx_dist_reducer_backward(kdx_dist_reducer *r, kdx_tensor *loss);
/* Ends the step: sends the rest, waits and writes the averaged gradients;
   *total = the rows of all ranks, sums[0..nextra-1] = extra summed over ranks. */
kdx_status kdx_dist_reducer_finish(kdx_dist_reducer *r, const double *extra, int nextra, double *total, double *sums);
/* Buckets of the reducer, and how many of them the last backward sent before it returned. */
void kdx_dist_reducer_counts(const kdx_dist_reducer *r, int *buckets, int *early);

#endif
