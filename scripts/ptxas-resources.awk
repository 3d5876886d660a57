# Reads ptxas's resource report (nvcc --resource-usage or -Xptxas -v; the build keeps it in
# <object>.resource-usage.txt) and prints one tab-separated line per function and architecture:
#   file arch kind name registers barriers stack_bytes spill_store_bytes spill_load_bytes smem_bytes
# kind is "entry" for a kernel and "function" for a device function ptxas compiled on its own
# (not inlined); a value the report does not give is "-". file is the log's name, without the
# directory and the ".o.resource-usage.txt" suffix (e.g. "cross_entropy.cu").
function base(path, b) {
  b = path
  sub(/.*\//, "", b)
  sub(/\.o\.resource-usage\.txt$/, "", b)
  sub(/\.resource-usage\.txt$/, "", b)
  return b
}
function remember(key) {
  if (!(key in seen)) {
    seen[key] = 1
    order[++count] = key
  }
}
BEGIN { OFS = "\t" }
FNR == 1 { file = base(FILENAME) }
/^ptxas info +: Compiling entry function '/ {
  name = $0
  sub(/^[^']*'/, "", name)
  arch = name
  sub(/'.*/, "", name)
  sub(/^[^']*' for '/, "", arch)
  sub(/'.*/, "", arch)
  entry = file SUBSEP arch SUBSEP name
  remember(entry)
  kind[entry] = "entry"
  next
}
/^ptxas info +: Function properties for / {
  name = $0
  sub(/^ptxas info +: Function properties for /, "", name)
  sub(/[ :]*$/, "", name)
  props = file SUBSEP arch SUBSEP name
  remember(props)
  if (!(props in kind)) kind[props] = "function"
  next
}
/^ +[0-9]+ bytes stack frame, / && props != "" {
  line = $0
  if (match(line, /[0-9]+ bytes stack frame/)) stack[props] = substr(line, RSTART, RLENGTH) + 0
  if (match(line, /[0-9]+ bytes spill stores/)) spill_st[props] = substr(line, RSTART, RLENGTH) + 0
  if (match(line, /[0-9]+ bytes spill loads/)) spill_ld[props] = substr(line, RSTART, RLENGTH) + 0
  props = ""
  next
}
/^ptxas info +: Used [0-9]+ registers/ && entry != "" {
  line = $0
  sub(/^ptxas info +: /, "", line)
  n = split(line, part, /, /)
  for (i = 1; i <= n; i++) {
    if (part[i] ~ /^Used [0-9]+ registers/) { split(part[i], w, " "); regs[entry] = w[2] }
    else if (part[i] ~ /^used [0-9]+ barriers/) { split(part[i], w, " "); barriers[entry] = w[2] }
    else if (part[i] ~ /^[0-9]+ bytes smem/) { split(part[i], w, " "); smem[entry] = w[1] }
  }
  next
}
function value(array, key) { return (key in array) ? array[key] : "-" }
END {
  for (i = 1; i <= count; i++) {
    key = order[i]
    split(key, f, SUBSEP)
    # A kernel without a smem figure in its "Used" line has no static shared memory.
    s = (kind[key] == "entry" && !(key in smem)) ? 0 : value(smem, key)
    print f[1], f[2], kind[key], f[3], value(regs, key), value(barriers, key), value(stack, key),
          value(spill_st, key), value(spill_ld, key), s
  }
}
