// CPU stand-in for the NCCL calls that the vocabulary-parallel cross-entropy's adapter
// (include/actloss/nccl.h) and programs around it make, defined against the real declarations of
// nccl.h (NCCL 2.28). As in the runtime and cuBLAS stand-ins, whatever is not here stays an
// undefined symbol: a program that needs another NCCL call fails to link in the simulator build
// instead of silently doing nothing.
//
// Ranks are host threads of one process (or one thread driving several ranks inside a group),
// and every virtual device's memory lies in the one simulated address space, so a collective is
// a few copies once every rank has posted it. The runtime runs everything at the call, and so
// does a collective: it returns when every rank of its communicator has posted its matching call
// (the calls are matched by each rank's count of collectives on the communicator) and the data
// has moved. Inside ncclGroupStart/End the calls are only recorded; ncclGroupEnd posts them all,
// then waits for them all, which is what lets one thread drive every rank. No call waits for
// ever: past the timeout (sim_control.h) it fails with ncclInvalidUsage, where a GPU would hang.
#include "engine.h"

#include <nccl.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <simcuda/sim_control.h>

#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <unistd.h>
#include <vector>

namespace simcuda::detail {
struct NcclClique;
}

struct ncclComm {
  std::shared_ptr<simcuda::detail::NcclClique> clique;
  int rank = 0;
  int device = 0;
  std::uint64_t posted = 0;  // collectives this rank has posted; guarded by the clique's mutex
};

namespace simcuda::detail {

enum class Collective { all_gather, all_reduce };

struct NcclCall {
  Collective kind = Collective::all_gather;
  const void* send = nullptr;
  void* recv = nullptr;
  std::size_t count = 0;  // per rank for the all-gather
  ncclDataType_t type = ncclUint8;
  ncclRedOp_t op = ncclSum;
  ncclComm* comm = nullptr;
  cudaStream_t stream = nullptr;
};

// One collective of a communicator: what each rank posted, and the outcome once every rank has
// (or once it failed: a mismatch, a destroyed rank, a timeout).
struct NcclRound {
  std::vector<std::optional<NcclCall>> calls;  // by rank
  int posted = 0;
  int collected = 0;  // ranks that took the outcome; the last one forgets the round
  bool done = false;
  ncclResult_t result = ncclSuccess;
  std::string message;
};

// The ranks of one communicator, and its collectives in flight.
struct NcclClique {
  explicit NcclClique(int ranks) : nranks(ranks), members(static_cast<std::size_t>(ranks)) {}
  const int nranks;
  std::mutex m;
  std::condition_variable cv;
  std::vector<ncclComm*> members;  // by rank: null before it joins and once it is destroyed
  int joined = 0;
  bool failed = false;  // its initialisation failed: `failure` says why
  std::string failure;
  std::map<std::uint64_t, NcclRound> rounds;  // by sequence number
};

namespace {

// The live communicators, and the cliques that ncclCommInitRank is still forming, by unique id.
// Lock order: the registry's mutex before a clique's.
struct Registry {
  std::mutex m;
  std::set<const ncclComm*> live;
  std::map<std::string, std::shared_ptr<NcclClique>> forming;
  std::uint64_t next_id = 0;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed, like the runtime's state
  return *r;
}

constexpr char kIdMagic[] = "simcuda-nccl-id";

thread_local std::string tl_last_message;

ncclResult_t fail(ncclResult_t result, const char* format, ...)
    __attribute__((format(printf, 2, 3)));
ncclResult_t fail(ncclResult_t result, const char* format, ...) {
  char text[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(text, sizeof text, format, args);
  va_end(args);
  tl_last_message = text;
  return result;
}

// The calls of the group this thread has open, posted at its outermost ncclGroupEnd.
struct Group {
  int depth = 0;
  std::vector<NcclCall> calls;
  std::vector<ncclComm*> joins;  // ncclCommInitRank inside the group: waited for at the end
  ncclResult_t error = ncclSuccess;
  std::string message;
};
thread_local Group tl_group;

// A call that fails inside a group fails the group too, as in NCCL.
ncclResult_t noted_in_group(ncclResult_t result) {
  if (result != ncclSuccess && tl_group.depth > 0 && tl_group.error == ncclSuccess) {
    tl_group.error = result;
    tl_group.message = tl_last_message;
  }
  return result;
}

// Waits on `clique`'s condition until `done` holds or the timeout passes (false; `seconds` says
// how long that was). A timeout of 0 (or an absurd one) waits for ever.
template <class Done>
bool wait_on(NcclClique& clique, std::unique_lock<std::mutex>& lock, double* seconds, Done done) {
  *seconds = simcuda::sim::nccl_timeout_seconds();
  if (!(*seconds > 0 && *seconds < 1e9)) {
    clique.cv.wait(lock, done);
    return true;
  }
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                         std::chrono::duration<double>(*seconds));
  return clique.cv.wait_until(lock, until, done);
}

bool is_live(const ncclComm* comm) {
  Registry& r = registry();
  std::lock_guard lk(r.m);
  return r.live.count(comm) != 0;
}

std::size_t type_size(ncclDataType_t type) {
  switch (type) {
    case ncclInt8:
    case ncclUint8:
    case ncclFloat8e4m3:
    case ncclFloat8e5m2: return 1;
    case ncclFloat16:
    case ncclBfloat16: return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32: return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64: return 8;
    default: return 0;
  }
}

const char* type_name(ncclDataType_t type) {
  switch (type) {
    case ncclInt8: return "ncclInt8";
    case ncclUint8: return "ncclUint8";
    case ncclInt32: return "ncclInt32";
    case ncclUint32: return "ncclUint32";
    case ncclInt64: return "ncclInt64";
    case ncclUint64: return "ncclUint64";
    case ncclFloat16: return "ncclFloat16";
    case ncclFloat32: return "ncclFloat32";
    case ncclFloat64: return "ncclFloat64";
    case ncclBfloat16: return "ncclBfloat16";
    case ncclFloat8e4m3: return "ncclFloat8e4m3";
    case ncclFloat8e5m2: return "ncclFloat8e5m2";
    default: return "an unknown type";
  }
}

const char* call_name(Collective kind) {
  return kind == Collective::all_gather ? "ncclAllGather" : "ncclAllReduce";
}

bool is_legacy(cudaStream_t stream) {
  return stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread;
}

// [a, a + a_bytes) and [b, b + b_bytes) share a byte.
bool overlap(const void* a, std::size_t a_bytes, const void* b, std::size_t b_bytes) {
  const auto x = reinterpret_cast<std::uintptr_t>(a);
  const auto y = reinterpret_cast<std::uintptr_t>(b);
  return x < y + b_bytes && y < x + a_bytes;
}

// What NCCL checks when a collective is called (and some of what a GPU would only fault on
// later): the communicator, the type and operation, the stream, and that both buffers are
// device memory of the communicator's device, wholly inside one allocation each.
ncclResult_t check_call(const NcclCall& c) {
  const char* name = call_name(c.kind);
  if (c.comm == nullptr) return fail(ncclInvalidArgument, "%s: comm is null", name);
  if (!is_live(c.comm))
    return fail(ncclInvalidArgument, "%s: comm %p is not a live communicator (destroyed, or not "
                                     "made by ncclCommInitRank or ncclCommInitAll)",
                name, static_cast<const void*>(c.comm));
  NcclClique& clique = *c.comm->clique;
  {
    std::lock_guard lk(clique.m);
    if (clique.failed)
      return fail(ncclInvalidUsage, "%s: the communicator's initialisation failed (%s)", name,
                  clique.failure.c_str());
  }
  const std::size_t size = type_size(c.type);
  if (size == 0) return fail(ncclInvalidArgument, "%s: datatype %d is not an ncclDataType_t", name,
                             static_cast<int>(c.type));
  if (c.kind == Collective::all_reduce) {
    if (static_cast<int>(c.op) < 0 || static_cast<int>(c.op) >= ncclNumOps)
      return fail(ncclInvalidArgument, "%s: op %d is not a built-in ncclRedOp_t", name,
                  static_cast<int>(c.op));
    if (c.type == ncclFloat8e4m3 || c.type == ncclFloat8e5m2)
      return fail(ncclInvalidArgument, "%s: reductions of %s are not modelled by the simulator",
                  name, type_name(c.type));
  }
  const int stream_dev = stream_device(c.stream);
  if (stream_dev < 0) return fail(ncclUnhandledCudaError, "%s: stream is not a live stream", name);
  if (!is_legacy(c.stream) && stream_dev != c.comm->device)
    return fail(ncclUnhandledCudaError,
                "%s: stream belongs to device %d, the communicator (rank %d) to device %d", name,
                stream_dev, c.comm->rank, c.comm->device);
  if (c.count == 0) return ncclSuccess;
  const auto ranks = static_cast<std::size_t>(clique.nranks);
  std::size_t send_bytes = 0, recv_bytes = 0;
  if (__builtin_mul_overflow(c.count, size, &send_bytes) ||
      (c.kind == Collective::all_gather ? __builtin_mul_overflow(send_bytes, ranks, &recv_bytes)
                                        : (recv_bytes = send_bytes, false)))
    return fail(ncclInvalidArgument, "%s: count %zu of %s overflows", name, c.count,
                type_name(c.type));
  const auto check_buffer = [&](const void* p, std::size_t bytes, const char* which) {
    if (p == nullptr) return fail(ncclInvalidArgument, "%s: %s is null", name, which);
    const int device = device_of_range(p, bytes);
    if (device != c.comm->device)
      return fail(ncclInvalidArgument,
                  "%s: %s %p: its %zu bytes are not within one cudaMalloc allocation of device %d "
                  "(the communicator's, rank %d)",
                  name, which, p, bytes, c.comm->device, c.comm->rank);
    return ncclSuccess;
  };
  if (ncclResult_t r = check_buffer(c.send, send_bytes, "sendbuff"); r != ncclSuccess) return r;
  if (ncclResult_t r = check_buffer(c.recv, recv_bytes, "recvbuff"); r != ncclSuccess) return r;
  // In place is the one overlap NCCL defines: sendbuff at this rank's slot of recvbuff (the
  // all-gather) or sendbuff == recvbuff (the all-reduce).
  const void* in_place = c.kind == Collective::all_gather
                             ? static_cast<const char*>(c.recv) +
                                   static_cast<std::size_t>(c.comm->rank) * send_bytes
                             : c.recv;
  if (c.send != in_place && overlap(c.send, send_bytes, c.recv, recv_bytes))
    return fail(ncclInvalidArgument,
                "%s: sendbuff overlaps recvbuff without being the in-place layout (sendbuff == "
                "recvbuff%s)",
                name, c.kind == Collective::all_gather ? " + rank * sendcount" : "");
  return ncclSuccess;
}

// ---- reductions: in rank order, in float for half and bfloat16, so every rank gets the same
// bits; integer sums and products wrap.
template <class T>
struct Element {
  using Acc = T;
  static Acc load(const void* p, std::size_t i) { return static_cast<const T*>(p)[i]; }
  static void store(void* p, std::size_t i, Acc v) { static_cast<T*>(p)[i] = v; }
};
template <>
struct Element<__half> {
  using Acc = float;
  static Acc load(const void* p, std::size_t i) {
    return __half2float(static_cast<const __half*>(p)[i]);
  }
  static void store(void* p, std::size_t i, Acc v) {
    static_cast<__half*>(p)[i] = __float2half_rn(v);
  }
};
template <>
struct Element<__nv_bfloat16> {
  using Acc = float;
  static Acc load(const void* p, std::size_t i) {
    return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  }
  static void store(void* p, std::size_t i, Acc v) {
    static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  }
};

template <class A>
A apply(ncclRedOp_t op, A a, A b) {
  switch (op) {
    case ncclProd:
      if constexpr (std::is_integral_v<A>) {
        using U = std::make_unsigned_t<A>;
        return static_cast<A>(static_cast<U>(a) * static_cast<U>(b));
      } else {
        return a * b;
      }
    case ncclMax: return a < b ? b : a;
    case ncclMin: return b < a ? b : a;
    default:  // ncclSum, ncclAvg
      if constexpr (std::is_integral_v<A>) {
        using U = std::make_unsigned_t<A>;
        return static_cast<A>(static_cast<U>(a) + static_cast<U>(b));
      } else {
        return a + b;
      }
  }
}

template <class T>
void reduce(const std::vector<std::optional<NcclCall>>& calls, std::size_t count, ncclRedOp_t op) {
  using E = Element<T>;
  using A = typename E::Acc;
  const auto ranks = static_cast<A>(calls.size());
  // Element by element: rank r's recvbuff may be its sendbuff, and each is read before written.
  for (std::size_t i = 0; i < count; ++i) {
    A acc = E::load(calls[0]->send, i);
    for (std::size_t r = 1; r < calls.size(); ++r) acc = apply(op, acc, E::load(calls[r]->send, i));
    if (op == ncclAvg) acc = static_cast<A>(acc / ranks);
    for (const auto& call : calls) E::store(call->recv, i, acc);
  }
}

void all_reduce(const std::vector<std::optional<NcclCall>>& calls) {
  const NcclCall& c = *calls[0];
  switch (c.type) {
    case ncclInt8: reduce<std::int8_t>(calls, c.count, c.op); break;
    case ncclUint8: reduce<std::uint8_t>(calls, c.count, c.op); break;
    case ncclInt32: reduce<std::int32_t>(calls, c.count, c.op); break;
    case ncclUint32: reduce<std::uint32_t>(calls, c.count, c.op); break;
    case ncclInt64: reduce<std::int64_t>(calls, c.count, c.op); break;
    case ncclUint64: reduce<std::uint64_t>(calls, c.count, c.op); break;
    case ncclFloat16: reduce<__half>(calls, c.count, c.op); break;
    case ncclFloat32: reduce<float>(calls, c.count, c.op); break;
    case ncclFloat64: reduce<double>(calls, c.count, c.op); break;
    case ncclBfloat16: reduce<__nv_bfloat16>(calls, c.count, c.op); break;
    default: break;  // refused by check_call
  }
}

void all_gather(const std::vector<std::optional<NcclCall>>& calls) {
  const std::size_t bytes = calls[0]->count * type_size(calls[0]->type);
  for (const auto& to : calls) {
    for (std::size_t r = 0; r < calls.size(); ++r) {
      char* slot = static_cast<char*>(to->recv) + r * bytes;
      if (slot != calls[r]->send) std::memcpy(slot, calls[r]->send, bytes);  // else in place
    }
  }
}

void finish(NcclRound& round, ncclResult_t result, std::string message) {
  round.done = true;
  round.result = result;
  round.message = std::move(message);
}

// Every rank posted round `seq`: check that the calls match, then move the data. Caller holds
// the clique's lock.
void complete(NcclClique& clique, std::uint64_t seq, NcclRound& round) {
  const NcclCall& first = *round.calls[0];
  for (int r = 1; r < clique.nranks; ++r) {
    const NcclCall& c = *round.calls[static_cast<std::size_t>(r)];
    if (c.kind != first.kind || c.count != first.count || c.type != first.type ||
        (c.kind == Collective::all_reduce && c.op != first.op)) {
      char text[400];
      std::snprintf(text, sizeof text,
                    "collective #%llu of the communicator does not match across ranks: rank 0 "
                    "called %s with count %zu of %s (op %d), rank %d %s with count %zu of %s "
                    "(op %d)",
                    static_cast<unsigned long long>(seq), call_name(first.kind), first.count,
                    type_name(first.type), static_cast<int>(first.op), r, call_name(c.kind),
                    c.count, type_name(c.type), static_cast<int>(c.op));
      finish(round, ncclInvalidUsage, text);
      return;
    }
  }
  if (first.kind == Collective::all_gather)
    all_gather(round.calls);
  else
    all_reduce(round.calls);
  finish(round, ncclSuccess, "");
}

// Posts a checked call of a non-empty collective; returns its sequence number for wait().
std::uint64_t post(const NcclCall& call) {
  NcclClique& clique = *call.comm->clique;
  std::lock_guard lk(clique.m);
  const std::uint64_t seq = call.comm->posted++;
  NcclRound& round = clique.rounds[seq];
  if (round.calls.empty()) round.calls.resize(static_cast<std::size_t>(clique.nranks));
  if (round.done) return seq;  // failed before this rank came (a peer timed out)
  round.calls[static_cast<std::size_t>(call.comm->rank)] = call;
  ++round.posted;
  for (int r = 0; r < clique.nranks; ++r) {
    if (clique.members[static_cast<std::size_t>(r)] == nullptr) {
      finish(round, ncclInvalidUsage,
             "rank " + std::to_string(r) + " of the communicator was destroyed: it cannot take "
             "part in collective #" + std::to_string(seq));
      clique.cv.notify_all();
      return seq;
    }
  }
  if (round.posted == clique.nranks) {
    complete(clique, seq, round);
    clique.cv.notify_all();
  }
  return seq;
}

// Waits for round `seq` of `comm` to complete (or fail, or time out) and takes its outcome.
ncclResult_t wait(ncclComm* comm, std::uint64_t seq) {
  NcclClique& clique = *comm->clique;
  std::unique_lock lk(clique.m);
  NcclRound& round = clique.rounds.at(seq);
  double seconds = 0;
  if (!wait_on(clique, lk, &seconds, [&] { return round.done; })) {
    std::string missing;
    for (int r = 0; r < clique.nranks; ++r) {
      if (round.calls[static_cast<std::size_t>(r)].has_value()) continue;
      missing += (missing.empty() ? "" : ", ") + std::to_string(r);
    }
    finish(round, ncclInvalidUsage,
           "timed out after " + std::to_string(seconds) + " s (simcuda::sim::"
           "set_nccl_timeout_seconds) waiting for rank(s) " + missing + " to post collective #" +
           std::to_string(seq) + " of the communicator (a rank that skipped it, or one thread "
           "driving several ranks outside ncclGroupStart/End)");
    clique.cv.notify_all();
  }
  const ncclResult_t result = round.result;
  if (result != ncclSuccess) tl_last_message = round.message;
  if (++round.collected == clique.nranks) clique.rounds.erase(seq);
  return result;
}

// A collective recorded into a graph: posted and waited for at each replay, from the thread that
// launches the graph (so every rank's graph needs a thread of its own).
cudaError_t replay(const NcclCall& call) {
  if (!is_live(call.comm)) {
    (void)fail(ncclInvalidArgument, "%s in a graph: its communicator was destroyed",
               call_name(call.kind));
    return cudaErrorLaunchFailure;
  }
  return wait(call.comm, post(call)) == ncclSuccess ? cudaSuccess : cudaErrorLaunchFailure;
}

// Runs checked calls: those on capturing streams are recorded into their graphs, the others are
// posted, all of them before any is waited for.
ncclResult_t run(const std::vector<NcclCall>& calls) {
  std::vector<std::pair<ncclComm*, std::uint64_t>> posted;
  ncclResult_t result = ncclSuccess;
  for (const NcclCall& call : calls) {
    if (call.count == 0) continue;
    switch (queue_library_call(call.stream, [call] { return replay(call); })) {
      case LibraryCall::run_now: posted.emplace_back(call.comm, post(call)); break;
      case LibraryCall::recorded: break;
      case LibraryCall::refused:
        if (result == ncclSuccess)
          result = fail(ncclUnhandledCudaError,
                        "%s on the legacy stream while a blocking stream captures "
                        "(cudaErrorStreamCaptureImplicit)",
                        call_name(call.kind));
        break;
    }
  }
  for (const auto& [comm, seq] : posted) {
    const ncclResult_t r = wait(comm, seq);
    if (result == ncclSuccess) result = r;
  }
  return result;
}

ncclResult_t collective(const NcclCall& call) {
  if (ncclResult_t r = check_call(call); r != ncclSuccess) return noted_in_group(r);
  if (tl_group.depth > 0) {
    tl_group.calls.push_back(call);
    return ncclSuccess;
  }
  return run({call});
}

// ---- communicators

// Removes `comm` from its clique and from the live set; a clique still forming fails, so that
// its other ranks stop waiting.
void forget(ncclComm* comm) {
  Registry& r = registry();
  std::lock_guard lk(r.m);
  r.live.erase(comm);
  NcclClique& clique = *comm->clique;
  std::lock_guard clk(clique.m);
  clique.members[static_cast<std::size_t>(comm->rank)] = nullptr;
  if (clique.joined < clique.nranks && !clique.failed) {
    clique.failed = true;
    clique.failure = "rank " + std::to_string(comm->rank) + " was destroyed while joining";
  }
  for (auto& [seq, round] : clique.rounds) {
    if (!round.done && !round.calls[static_cast<std::size_t>(comm->rank)].has_value())
      finish(round, ncclInvalidUsage,
             "rank " + std::to_string(comm->rank) + " of the communicator was destroyed before "
             "posting collective #" + std::to_string(seq));
  }
  clique.cv.notify_all();
}

// Waits until every rank of comm's clique has joined (ncclCommInitRank's rendezvous).
ncclResult_t wait_joined(ncclComm* comm) {
  NcclClique& clique = *comm->clique;
  std::unique_lock lk(clique.m);
  double seconds = 0;
  if (!wait_on(clique, lk, &seconds,
               [&] { return clique.failed || clique.joined == clique.nranks; })) {
    clique.failed = true;
    clique.failure = "only " + std::to_string(clique.joined) + " of " +
                     std::to_string(clique.nranks) + " ranks called ncclCommInitRank within " +
                     std::to_string(seconds) + " s (simcuda::sim::set_nccl_timeout_seconds)";
    clique.cv.notify_all();
  }
  if (!clique.failed) return ncclSuccess;
  return fail(ncclInvalidUsage, "ncclCommInitRank (rank %d): %s", comm->rank,
              clique.failure.c_str());
}

bool made_here(const ncclUniqueId& id) {
  return std::memcmp(id.internal, kIdMagic, sizeof kIdMagic) == 0;
}

ncclResult_t init_rank(ncclComm_t* comm, int nranks, const ncclUniqueId& id, int rank) {
  if (comm == nullptr) return fail(ncclInvalidArgument, "ncclCommInitRank: comm is null");
  *comm = nullptr;
  if (nranks < 1)
    return fail(ncclInvalidArgument, "ncclCommInitRank: nranks %d (must be >= 1)", nranks);
  if (rank < 0 || rank >= nranks)
    return fail(ncclInvalidArgument, "ncclCommInitRank: rank %d is not in [0, nranks = %d)", rank,
                nranks);
  if (!made_here(id))
    return fail(ncclInvalidArgument, "ncclCommInitRank: the unique id was not made by "
                                     "ncclGetUniqueId");
  const int device = current_device();
  const std::string key(id.internal, sizeof id.internal);
  Registry& reg = registry();
  std::lock_guard lk(reg.m);
  std::shared_ptr<NcclClique>& slot = reg.forming[key];
  if (slot == nullptr) slot = std::make_shared<NcclClique>(nranks);
  const std::shared_ptr<NcclClique> clique = slot;
  std::lock_guard clk(clique->m);
  const auto refuse = [&](std::string why) {
    // The clique fails for every rank: the others would wait for ever.
    if (!clique->failed) {
      clique->failed = true;
      clique->failure = why;
      clique->cv.notify_all();
    }
    return fail(ncclInvalidUsage, "ncclCommInitRank (rank %d): %s", rank, why.c_str());
  };
  if (clique->failed) return refuse(clique->failure);
  if (clique->nranks != nranks)
    return refuse("nranks " + std::to_string(nranks) + ", but the ranks before it said " +
                  std::to_string(clique->nranks));
  if (clique->members[static_cast<std::size_t>(rank)] != nullptr)
    return refuse("rank " + std::to_string(rank) + " joined twice");
  for (const ncclComm* other : clique->members) {
    if (other != nullptr && other->device == device)
      return refuse("ranks " + std::to_string(other->rank) + " and " + std::to_string(rank) +
                    " are both on device " + std::to_string(device) +
                    " (one rank per device: call cudaSetDevice first)");
  }
  auto* created = new ncclComm{clique, rank, device, 0};
  clique->members[static_cast<std::size_t>(rank)] = created;
  reg.live.insert(created);
  if (++clique->joined == nranks) {
    reg.forming.erase(key);
    clique->cv.notify_all();
  }
  *comm = created;
  return ncclSuccess;
}

// A communicator's property, for ncclCommCount and its kind.
template <class Field>
ncclResult_t query(const ncclComm* comm, int* out, const char* name, Field field) {
  if (out == nullptr) return fail(ncclInvalidArgument, "%s: the output pointer is null", name);
  if (comm == nullptr || !is_live(comm))
    return fail(ncclInvalidArgument, "%s: comm %p is not a live communicator", name,
                static_cast<const void*>(comm));
  *out = field(*comm);
  return ncclSuccess;
}

}  // namespace
}  // namespace simcuda::detail

using namespace simcuda::detail;

extern "C" {

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
  }
}

const char* ncclGetLastError(ncclComm_t) { return tl_last_message.c_str(); }

ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId) {
  if (uniqueId == nullptr) return fail(ncclInvalidArgument, "ncclGetUniqueId: uniqueId is null");
  *uniqueId = ncclUniqueId{};
  std::uint64_t serial = 0;
  {
    Registry& r = registry();
    std::lock_guard lk(r.m);
    serial = r.next_id++;
  }
  const auto pid = static_cast<std::uint64_t>(getpid());
  std::memcpy(uniqueId->internal, kIdMagic, sizeof kIdMagic);
  std::memcpy(uniqueId->internal + sizeof kIdMagic, &serial, sizeof serial);
  std::memcpy(uniqueId->internal + sizeof kIdMagic + sizeof serial, &pid, sizeof pid);
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank) {
  if (ncclResult_t r = init_rank(comm, nranks, commId, rank); r != ncclSuccess)
    return noted_in_group(r);
  if (tl_group.depth > 0) {
    tl_group.joins.push_back(*comm);
    return ncclSuccess;
  }
  const ncclResult_t r = wait_joined(*comm);
  if (r != ncclSuccess) {
    forget(*comm);
    delete *comm;
    *comm = nullptr;
  }
  return r;
}

ncclResult_t ncclCommInitAll(ncclComm_t* comms, int ndev, const int* devlist) {
  if (comms == nullptr) return fail(ncclInvalidArgument, "ncclCommInitAll: comms is null");
  if (ndev < 1) return fail(ncclInvalidArgument, "ncclCommInitAll: ndev %d (must be >= 1)", ndev);
  std::vector<int> devices(static_cast<std::size_t>(ndev));
  for (int i = 0; i < ndev; ++i) {
    const int d = devlist != nullptr ? devlist[i] : i;
    if (d < 0 || d >= device_count())
      return fail(ncclInvalidArgument, "ncclCommInitAll: device %d (rank %d) is not in [0, %d)", d,
                  i, device_count());
    for (int j = 0; j < i; ++j) {
      if (devices[static_cast<std::size_t>(j)] == d)
        return fail(ncclInvalidUsage, "ncclCommInitAll: ranks %d and %d both on device %d", j, i,
                    d);
    }
    devices[static_cast<std::size_t>(i)] = d;
  }
  const auto clique = std::make_shared<NcclClique>(ndev);
  clique->joined = ndev;
  Registry& reg = registry();
  std::lock_guard lk(reg.m);
  for (int i = 0; i < ndev; ++i) {
    auto* comm = new ncclComm{clique, i, devices[static_cast<std::size_t>(i)], 0};
    clique->members[static_cast<std::size_t>(i)] = comm;
    reg.live.insert(comm);
    comms[i] = comm;
  }
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm == nullptr) return ncclSuccess;  // as NCCL: destroying NULL does nothing
  if (!is_live(comm))
    return fail(ncclInvalidArgument, "ncclCommDestroy: comm %p is not a live communicator",
                static_cast<const void*>(comm));
  forget(comm);
  delete comm;
  return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  return query(comm, count, "ncclCommCount", [](const ncclComm& c) { return c.clique->nranks; });
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  return query(comm, rank, "ncclCommUserRank", [](const ncclComm& c) { return c.rank; });
}

ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int* device) {
  return query(comm, device, "ncclCommCuDevice", [](const ncclComm& c) { return c.device; });
}

ncclResult_t ncclGroupStart() {
  ++tl_group.depth;
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd() {
  if (tl_group.depth == 0)
    return fail(ncclInvalidUsage, "ncclGroupEnd: no ncclGroupStart is open on this thread");
  if (--tl_group.depth > 0) return ncclSuccess;
  Group group = std::move(tl_group);
  tl_group = Group{};
  if (group.error != ncclSuccess) {
    tl_last_message = group.message;
    return group.error;
  }
  ncclResult_t result = ncclSuccess;
  for (ncclComm* comm : group.joins) {
    const ncclResult_t r = wait_joined(comm);
    if (result == ncclSuccess) result = r;
  }
  if (result != ncclSuccess) return result;
  return run(group.calls);
}

ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                           ncclDataType_t datatype, ncclComm_t comm, cudaStream_t stream) {
  NcclCall call;
  call.kind = Collective::all_gather;
  call.send = sendbuff;
  call.recv = recvbuff;
  call.count = sendcount;
  call.type = datatype;
  call.comm = comm;
  call.stream = stream;
  return collective(call);
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t stream) {
  NcclCall call;
  call.kind = Collective::all_reduce;
  call.send = sendbuff;
  call.recv = recvbuff;
  call.count = count;
  call.type = datatype;
  call.op = op;
  call.comm = comm;
  call.stream = stream;
  return collective(call);
}

}  // extern "C"
