// emu_traffic.cpp: a launch's memory traffic as a GPU's L1 would serve it (the
// emulator's "traffic" setting, CHECK_TRAFFIC), counted on the CPU.
//
// The checked build's instrumentation (emu_check.cpp's hooks) hands every load
// and store of an argument buffer or a shared variable here, with its code
// site; so do the tensor-core primitives' notes (emu_race.h: ldmatrix's rows,
// cp.async's source at the issue and its landing at the wait, at the issue's
// line). A warp's instruction is its lanes' accesses at one site and one
// occurrence: the k-th access of each thread at a site (per direction) belongs
// to the warp's k-th request there, which holds where the warp's control flow
// at that site is uniform, as in the kernels' hot loops. A copy wider than 16
// bytes (a struct) is the loads NVCC would make of it, each its own request:
// pieces as wide as the type's alignment, which divides its size (the size's
// lowest set bit, at most 16). At the end of each block its requests are
// scored:
//   * global memory: 32-byte sectors and 128-byte lines touched, against the
//     ideal, the sectors its distinct bytes would fill (ceil(bytes / 32));
//   * shared memory: wavefronts, CUDA's bank rule: 32 banks of 4-byte words; a
//     request goes in phases of 32 lanes (accesses of 4 bytes or less), 16
//     (8 bytes) or 8 (16 bytes: a quarter warp, which is also ldmatrix's
//     matrix of 8 rows); a phase takes as many wavefronts as the most distinct
//     words any one bank holds (lanes reading one word share it: a broadcast).
//     The ideal is the return path's: ceil(bytes the lanes get / 128), since a
//     wavefront returns at most 128 bytes (one register a lane), broadcast or
//     not; halved, as the phases' lanes doubled, where every lane's partner
//     l ^ 1 (or every lane's l ^ 2) reads the same address (NVIDIA's rule for
//     uniform loads, which then return once for both). So a request's excess
//     over its ideal is its bank conflicts.
// Per (site, direction, buffer) the counts add up over the launch's blocks.
// Not modelled: the L1's hits (every request counts, cached or not), atomics
// (counted as writes), and wgmma's operand reads, left out (emu_mma.cpp notes
// them for the race checks alone): the tensor core reads its operands from
// shared memory through its own path, not in warp requests.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "emu_internal.h"

using namespace gpucnn_emu;
using namespace gpucnn_emu::rt;

namespace {
struct Span { uintptr_t lo, size; int arg; bool shared; const char* name; };
struct Ev {
    uintptr_t addr;
    uint32_t site, seq;
    uint16_t tid, n;
    uint8_t write, piece;  // piece: of an access wider than 16 bytes, split as a GPU's loads split it
    int16_t span;
};
struct Stat {
    uint32_t site, write;
    int span;
    uint64_t requests, lanes, bytes, units, ideal, lines;  // units: sectors (global), wavefronts (shared)
};
std::vector<Span> g_spans;
std::vector<Ev> g_ev;
std::unordered_map<uint64_t, uint32_t> g_seq;  // (tid, site, direction) -> its accesses so far in the block
std::vector<Stat> g_stats;
std::unordered_map<uint64_t, size_t> g_index;  // (site, direction, span) -> g_stats entry
bool g_on = false;

// Distinct values of v, in place.
size_t distinct(std::vector<uint64_t>& v) {
    std::sort(v.begin(), v.end());
    return (size_t)(std::unique(v.begin(), v.end()) - v.begin());
}

// Whether every lane of the request has a partner lane l ^ x in it reading the same bytes.
bool pairs_alike(const Ev* b, const Ev* e, unsigned x) {
    const Ev* lane[32] = {};
    for (const Ev* v = b; v != e; ++v) lane[v->tid % 32] = v;
    for (unsigned l = 0; l < 32; ++l)
        if (lane[l] && (!lane[l ^ x] || lane[l ^ x]->addr != lane[l]->addr || lane[l ^ x]->n != lane[l]->n))
            return false;
    return true;
}

// The units of 2^shift bytes that event v's bytes touch, appended to out.
void touched(const Ev& v, unsigned shift, std::vector<uint64_t>& out) {
    for (uintptr_t u = v.addr >> shift; u <= (v.addr + v.n - 1) >> shift; ++u) out.push_back(u);
}

// Scores one warp request: events [b, e), one a lane, all at one site and span.
void score(const Ev* b, const Ev* e) {
    const Span& sp = g_spans[(size_t)b->span];
    uint64_t bytes = 0, units = 0, nlines = 0, ideal;
    unsigned widest = 0;
    for (const Ev* v = b; v != e; ++v) bytes += v->n, widest = std::max<unsigned>(widest, v->n);
    if (!sp.shared) {
        static std::vector<uint64_t> words, sectors, lines;
        words.clear(), sectors.clear(), lines.clear();
        for (const Ev* v = b; v != e; ++v) touched(*v, 2, words), touched(*v, 5, sectors), touched(*v, 7, lines);
        units = distinct(sectors);
        nlines = distinct(lines);
        ideal = (4 * distinct(words) + 31) / 32;  // the distinct bytes' sectors
    } else {
        // Lanes a phase; doubled where lane pairs (l, l ^ 1) or (l, l ^ 2) read the same address
        // (NVIDIA's rule for uniform loads: one return serves both lanes of a pair).
        unsigned per = widest <= 4 ? 32 : widest <= 8 ? 16 : 8;
        const bool paired = !b->write && (pairs_alike(b, e, 1) || pairs_alike(b, e, 2));
        if (paired && per < 32) per *= 2;
        static std::vector<uint64_t> bank[32], words;
        for (unsigned phase = 0; phase < 32 / per; ++phase) {
            for (auto& k : bank) k.clear();
            bool any = false;
            for (const Ev* v = b; v != e; ++v) {
                if ((v->tid % 32) / per != phase) continue;
                any = true;
                words.clear();
                touched(*v, 2, words);
                for (uint64_t w : words) bank[w % 32].push_back(w);
            }
            size_t most = any ? 1 : 0;
            for (auto& k : bank) most = std::max(most, distinct(k));
            units += most;
        }
        ideal = (bytes + 127) / 128;  // the return path's 128 bytes a wavefront
        if (paired) ideal = (ideal + 1) / 2;
    }
    const uint64_t key = (uint64_t)b->site << 32 | (uint64_t)b->write << 31 | (uint64_t)(uint16_t)b->span;
    auto it = g_index.find(key);
    if (it == g_index.end()) {
        it = g_index.emplace(key, g_stats.size()).first;
        g_stats.push_back(Stat{b->site, b->write, b->span, 0, 0, 0, 0, 0, 0});
    }
    Stat& s = g_stats[it->second];
    s.requests += 1;
    s.lanes += (uint64_t)(e - b);
    s.bytes += bytes;
    s.units += units;
    s.ideal += ideal;
    s.lines += nlines;
}

// Scores the block's requests and forgets its accesses.
void flush() {
    std::sort(g_ev.begin(), g_ev.end(), [](const Ev& a, const Ev& b) {
        return std::make_tuple(a.site, a.write, a.span, a.piece, a.seq, a.tid / 32, a.tid) <
               std::make_tuple(b.site, b.write, b.span, b.piece, b.seq, b.tid / 32, b.tid);
    });
    const auto same = [](const Ev& a, const Ev& b) {
        return a.site == b.site && a.write == b.write && a.span == b.span && a.piece == b.piece && a.seq == b.seq &&
               a.tid / 32 == b.tid / 32;
    };
    for (size_t i = 0; i < g_ev.size();) {
        size_t j = i + 1;
        while (j < g_ev.size() && same(g_ev[i], g_ev[j])) ++j;
        score(&g_ev[i], &g_ev[j]);
        i = j;
    }
    g_ev.clear();
    g_seq.clear();
}
}  // namespace

namespace gpucnn_emu::rt {
void traffic_begin(const LaunchSpec* s) {
    g_on = (s->checks & CHECK_TRAFFIC) != 0;
    g_stats.clear();
    g_index.clear();
    g_ev.clear();
    g_seq.clear();
    g_spans.clear();
    if (!g_on) return;
    for (int i = 0; i < s->nregions; ++i)
        g_spans.push_back(Span{s->regions[i].lo, s->regions[i].size, s->regions[i].arg, false, nullptr});
    for (int i = 0; i < g_nsmem; ++i)
        if (g_smem[i].owner == 0 || g_smem[i].owner == s->owner)
            g_spans.push_back(Span{(uintptr_t)g_smem[i].p, g_smem[i].n, -1, true, g_smem[i].name});
    g_spans.push_back(Span{(uintptr_t)s->dyn_ptr, s->dyn_size, -1, true, "dynamic shared memory"});
}

void traffic_note(uintptr_t a, size_t n, bool write, uint32_t site) {
    if (!g_on || !g_in_fiber || !n) return;
    for (size_t i = 0; i < g_spans.size(); ++i) {
        if (a - g_spans[i].lo >= g_spans[i].size) continue;
        const unsigned tid = (unsigned)(gpucnn_cur - g_fib);
        const uint32_t seq = g_seq[(uint64_t)tid << 33 | (uint64_t)site << 1 | (write ? 1 : 0)]++;
        // A GPU moves at most 16 bytes a lane an instruction: a wider copy (a struct) is several,
        // each as wide as the type's alignment, which divides its size (n's lowest set bit, at most
        // 16: a 24-byte struct is three 8-byte loads); each piece is its own request.
        const size_t w = n > 16 ? std::min<size_t>(16, n & (~n + 1)) : n;
        uint8_t piece = 0;
        for (size_t off = 0; off < n; off += w, ++piece)
            g_ev.push_back(Ev{a + off, site, seq, (uint16_t)tid, (uint16_t)std::min(w, n - off), (uint8_t)write,
                              piece, (int16_t)i});
        return;
    }
}

void traffic_block() {
    if (g_on) flush();
}
}  // namespace gpucnn_emu::rt

// ---- results, read by launch.py after a launch that counted them
extern "C" {
GPUCNN_EXPORT int gpucnn_traffic_count() { return (int)g_stats.size(); }

// Row i: out = {site, direction (1: write), argument (-1: shared memory), shared, requests, lanes,
// bytes, sectors or wavefronts, the ideal, lines}; name: a shared variable's name.
GPUCNN_EXPORT void gpucnn_traffic_row(int i, uint64_t* out, char* name, int nname) {
    const Stat& s = g_stats[(size_t)i];
    const Span& sp = g_spans[(size_t)s.span];
    const uint64_t row[] = {s.site, s.write, (uint64_t)(int64_t)sp.arg, sp.shared, s.requests, s.lanes,
                            s.bytes, s.units, s.ideal, s.lines};
    std::memcpy(out, row, sizeof row);
    snprintf(name, (size_t)nname, "%s", sp.name ? sp.name : "");
}
}
