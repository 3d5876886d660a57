# Reads `cuobjdump -sass` output and prints, per function and architecture, one tab-separated line:
#   arch name in_loop ldg128 ldg64 ldg_narrow ldg_all burst_loads burst_bytes burst_mix burst128
# The hot loop: of the loops (a backward branch and the code back to its target) that hold a
# global load, the longest, and one that holds a 128-bit load before any other: a kernel that
# vectorises streams through its vector loop, not through the scalar loop for a misaligned
# buffer or the tail. For a grid-stride kernel it is the loop over rows or elements, which holds
# any inner loop, and not a prologue that sums a few partials. in_loop is 0 when no loop holds a
# load, and the figures are then the whole function's.
# ldg128/ldg64/ldg_narrow: the hot loop's global loads by width (narrow: 32 bits and less) over
# every path, dtype and alignment fallbacks included; ldg_all: the function's loads.
# burst: the most bytes of global loads one thread can issue in the hot loop before any
# instruction reads a register one of them writes (the loads, the bytes, and the widths, e.g.
# "8×16 B"): the bytes a thread keeps in flight, which Little's law asks of a memory-bound kernel.
# burst128: the 128-bit (and wider) loads of that burst. A burst starts at each load that does not follow
# another; at a conditional forward branch both arms are tried (the bounds check that skips a
# chunk, the dtype or alignment choice between a vector and a scalar path) and the better kept;
# an unconditional forward branch jumps; a backward branch, a return or an exit ends it. At most
# kBeam bursts in progress (the most bytes) pass through one instruction, which keeps the search
# to seconds and can leave the figure a little short of the true maximum.
# Operands are matched by register number, so a register read as half of a 64-bit pair it does
# not name can go unseen: the figure is a proxy, not a schedule.

function hex(s,   v, k, c) {
  v = 0
  s = tolower(s)
  for (k = 1; k <= length(s); k++) {
    c = index("0123456789abcdef", substr(s, k, 1))
    if (c == 0) break
    v = v * 16 + c - 1
  }
  return v
}
# The register numbers an operand text names, space-separated: "R4" one, "R4.64" (or any
# register of a double-precision operation) the pair.
function registers(text, pairs,   tokens, t, k, r, m, out) {
  gsub(/[^A-Za-z0-9_.]/, " ", text)
  m = split(text, tokens, " ")
  out = ""
  for (k = 1; k <= m; k++) {
    t = tokens[k]
    if (t !~ /^R[0-9]+/) continue
    r = t; sub(/^R/, "", r); sub(/[^0-9].*/, "", r); r += 0
    out = out " " r
    if (t ~ /\.64$/ || pairs) out = out " " (r + 1)
  }
  return out
}
function ldg_width(op) {
  if (op ~ /\.256(\.|$)/) return 32
  if (op ~ /\.128(\.|$)/) return 16
  if (op ~ /\.64(\.|$)/) return 8
  if (op ~ /\.(U|S)8(\.|$)/) return 1
  if (op ~ /\.(U|S)16(\.|$)/) return 2
  return 4
}

# The loads of a burst, by width, as one number: base-256 digits, 1-byte loads lowest.
function width_digit(w) { return w == 32 ? 256 ^ 5 : w == 16 ? 256 ^ 4 : w == 8 ? 256 ^ 3 : w == 4 ? 65536 : w == 2 ? 256 : 1 }
function better(bytes, loads, than_bytes, than_loads) {
  return bytes > than_bytes || (bytes == than_bytes && loads < than_loads)
}
# Hands a burst in progress on to instruction j. Bursts that reach j with the same loads in
# flight are one, the better kept; beyond kBeam at one instruction the worst is dropped.
function push(j, pending, bytes, loads, mix,   k, worst) {
  if (j > n) { finish(bytes, loads, mix); return }
  for (k = 1; k <= at_count[j]; k++)
    if (at_pending[j, k] == pending) {
      if (better(bytes, loads, at_bytes[j, k], at_loads[j, k])) {
        at_bytes[j, k] = bytes; at_loads[j, k] = loads; at_mix[j, k] = mix
      }
      return
    }
  if (at_count[j] >= kBeam) {
    worst = 1
    for (k = 2; k <= at_count[j]; k++)
      if (better(at_bytes[j, worst], at_loads[j, worst], at_bytes[j, k], at_loads[j, k])) worst = k
    if (!better(bytes, loads, at_bytes[j, worst], at_loads[j, worst])) return
    finish(at_bytes[j, worst], at_loads[j, worst], at_mix[j, worst])
    k = worst
  } else {
    k = ++at_count[j]
  }
  at_pending[j, k] = pending; at_bytes[j, k] = bytes; at_loads[j, k] = loads; at_mix[j, k] = mix
}
function finish(bytes, loads, mix) {
  if (loads > 0 && better(bytes, loads, best_bytes, best_loads)) {
    best_bytes = bytes; best_loads = loads; best_mix = mix
  }
}
# Follows every burst that starts in instructions lo..hi through the code as laid out, in
# address order: the code ahead of a burst is a forward graph, since a backward branch ends it.
# Sets best_bytes, best_loads and best_mix.
function bursts(lo, hi,   i, k, m, src, pending, bytes, loads, mix, count, c, taken) {
  best_bytes = best_loads = 0; best_mix = 0
  delete at_count
  for (i = lo; i <= n; i++) {
    if (i <= hi && width[i] > 0 && (i == lo || width[i - 1] == 0)) push(i, " ", 0, 0, 0)
    count = at_count[i] + 0
    for (k = 1; k <= count; k++) {
      pending = at_pending[i, k]; bytes = at_bytes[i, k]; loads = at_loads[i, k]; mix = at_mix[i, k]
      delete at_pending[i, k]; delete at_bytes[i, k]; delete at_loads[i, k]; delete at_mix[i, k]
      m = split(reads[i], src, " ")
      for (c = 1; c <= m; c++) if (index(pending, " " src[c] " ")) break
      if (c <= m) { finish(bytes, loads, mix); continue }
      if (width[i] > 0) {
        m = split(writes[i], src, " ")
        for (c = 1; c <= m; c++) pending = pending src[c] " "
        push(i + 1, pending, bytes + width[i], loads + 1, mix + width_digit(width[i]))
        continue
      }
      if (ends_walk[i]) { finish(bytes, loads, mix); continue }
      if (opcode[i] ~ /^BRA/) {
        if (!(i in target) || !(target[i] in index_of)) { finish(bytes, loads, mix); continue }
        taken = index_of[target[i]]
        if (target[i] <= addr[i]) {
          if (guarded[i]) push(i + 1, pending, bytes, loads, mix)
          else finish(bytes, loads, mix)
          continue
        }
        push(taken, pending, bytes, loads, mix)
        if (guarded[i]) push(i + 1, pending, bytes, loads, mix)
        continue
      }
      push(i + 1, pending, bytes, loads, mix)
    }
    delete at_count[i]
    if (i >= hi) {
      # Past the hot loop, only the bursts still under way are followed.
      for (k = i + 1; k <= n && !(k in at_count); k++) {}
      if (k > n) break
      i = k - 1
    }
  }
}

function flush(   i, k, w, loops, first, last, holds, wide, hot, lo, hi, c128, c64, cn, all,
                  best_mix_text, best_128) {
  if (name == "") return
  # The hot loop.
  loops = 0
  for (i = 1; i <= n; i++)
    if (opcode[i] ~ /^BRA/ && (i in target) && target[i] < addr[i] && (target[i] in index_of)) {
      loops++; first[loops] = index_of[target[i]]; last[loops] = i; holds[loops] = wide[loops] = 0
      for (k = first[loops]; k <= i; k++) {
        if (width[k] > 0) holds[loops]++
        if (width[k] >= 16) wide[loops]++
      }
    }
  hot = 0
  for (k = 1; k <= loops; k++) {
    if (holds[k] == 0) continue
    if (hot == 0 || (wide[k] > 0) > (wide[hot] > 0) ||
        ((wide[k] > 0) == (wide[hot] > 0) && last[k] - first[k] > last[hot] - first[hot]))
      hot = k
  }
  if (hot == 0) { lo = 1; hi = n } else { lo = first[hot]; hi = last[hot] }

  c128 = c64 = cn = all = 0
  for (i = 1; i <= n; i++) {
    if (width[i] == 0) continue
    all++
    if (i < lo || i > hi) continue
    if (width[i] >= 16) c128++; else if (width[i] == 8) c64++; else cn++
  }
  bursts(lo, hi)
  best_mix_text = "-"
  best_128 = 0
  if (best_loads > 0) {
    best_mix_text = ""
    for (w = 32; w >= 1; w /= 2) {
      k = int(best_mix / width_digit(w)) % 256
      if (k > 0) best_mix_text = best_mix_text (best_mix_text == "" ? "" : " + ") k "×" w " B"
      if (w >= 16) best_128 += k
    }
  }
  print arch, name, (hot > 0), c128, c64, cn, all, best_loads, best_bytes, best_mix_text, best_128
  name = ""
  n = 0
  delete addr; delete opcode; delete guarded; delete target; delete index_of
  delete width; delete reads; delete writes; delete ends_walk
}

BEGIN {
  OFS = "\t"; name = ""
  kBeam = 8
}
/^[ \t]*code for sm_[0-9a-z]+/ {
  flush()
  arch = $0; sub(/.*code for /, "", arch); sub(/[ \t].*/, "", arch)
  next
}
/^[ \t]*Function : / { flush(); name = $0; sub(/.*Function : /, "", name); sub(/[ \t]+$/, "", name); next }
/^[ \t]*\/\*[0-9a-f]+\*\/ / && name != "" {
  line = $0
  a = line; sub(/^[ \t]*\/\*/, "", a); sub(/\*\/.*/, "", a)
  sub(/^[ \t]*\/\*[0-9a-f]+\*\/[ \t]*/, "", line)
  sub(/[ \t]*;.*/, "", line)
  n++
  addr[n] = hex(a)
  index_of[addr[n]] = n
  guarded[n] = (line ~ /^@/)
  sub(/^@!?U?P[T0-9]+[ \t]+/, "", line)
  op = line; sub(/[ \t].*/, "", op)
  operands = (index(line, " ") ? substr(line, index(line, " ") + 1) : "")
  sub(/^[ \t]+/, "", operands)
  opcode[n] = op
  # A branch on a predicate operand ("BRA P3, 0x..", "BRA.U !UP0, 0x..") is conditional too.
  if (op ~ /^BRA/ && (operands ~ /(^|[ !])U?P[0-6],/ || op ~ /^BRA\.(DIV|CONV)/)) guarded[n] = 1
  if (op ~ /^(BRA|BRX|JMP|JMX|BSSY|CALL|BREAK)/ && match(operands, /0x[0-9a-f]+$/))
    target[n] = hex(substr(operands, RSTART + 2))
  ends_walk[n] = (op ~ /^(EXIT|RET|BRX|JMX|CALL|KILL|BPT)/ && !guarded[n])
  # What it reads: every register but a leading destination (a store's first operand is its
  # address, which it reads).
  dest = operands; sub(/,.*/, "", dest)
  rest = operands
  if (dest ~ /^R[0-9]/ && op !~ /^(ST|RED)/) rest = substr(operands, length(dest) + 1)
  reads[n] = registers(rest, op ~ /^D(ADD|MUL|FMA|SETP|MNMX)/ || op ~ /F64/)
  width[n] = 0
  if (op ~ /^LDG/) {
    width[n] = ldg_width(op)
    writes[n] = ""
    if (dest ~ /^R[0-9]/) {
      r = dest; sub(/^R/, "", r); sub(/[^0-9].*/, "", r); r += 0
      for (k = 0; k < (width[n] > 4 ? width[n] / 4 : 1); k++) writes[n] = writes[n] " " (r + k)
    }
  }
  next
}
END { flush() }
