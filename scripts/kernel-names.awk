# Short kernel names for reports: `awk -f scripts/kernel-names.awk cuda/*.cu cuda/*.cuh cuda/*.h -`
# reads the sources for their enums, then demangled names on standard input, one a line, and
# prints each without "void", namespaces or the parameter list, with enum template arguments by
# enumerator ("(Variant)1" becomes "plain") and dtypes as the library names them (bf16, f16, f32).
FILENAME != "-" && /enum class [A-Za-z_]+/ {
  enum = $0; sub(/.*enum class /, "", enum); sub(/[^A-Za-z_].*/, "", enum)
  body = ""; collecting = 1
}
FILENAME != "-" && collecting {
  line = $0
  sub(/\/\/.*/, "", line)
  body = body " " line
  if (line ~ /}/) {
    sub(/^[^{]*\{/, "", body); sub(/\}.*/, "", body)
    count = split(body, item, ","); value = 0
    for (i = 1; i <= count; i++) {
      e = item[i]; gsub(/[ \t]/, "", e)
      if (e == "") continue
      if (e ~ /=/) { value = substr(e, index(e, "=") + 1) + 0; sub(/=.*/, "", e) }
      enumerator["(" enum ")" value] = e
      value++
    }
    collecting = 0
  }
  next
}
FILENAME != "-" { next }
{
  s = $0
  sub(/^void /, "", s)
  # The parameter list is the last top-level parenthesised group.
  if (s ~ /\)$/) {
    depth = 0
    for (i = length(s); i > 0; i--) {
      c = substr(s, i, 1)
      if (c == ")") depth++
      else if (c == "(" && --depth == 0) { s = substr(s, 1, i - 1); break }
    }
  }
  gsub(/\(anonymous namespace\)::/, "", s)
  gsub(/[A-Za-z_][A-Za-z_0-9]*::/, "", s)
  for (e in enumerator)
    while ((k = index(s, e)) > 0) s = substr(s, 1, k - 1) enumerator[e] substr(s, k + length(e))
  gsub(/__nv_bfloat16/, "bf16", s)
  gsub(/__half/, "f16", s)
  while (match(s, /[<, ]float[,>]/)) s = substr(s, 1, RSTART) "f32" substr(s, RSTART + 6)
  print s
}
