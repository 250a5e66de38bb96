#!lua flags=no-writes
--[[
redbandit recommend: the top-k products of a LinUCB model for one context.

  EVALSHA <sha> 1 rb:{M} <k> <alpha> <x_1> ... <x_d> [CANDIDATES <n> <id>...] [EXCLUDE <n> <id>...] [SEED <s>]
  FCALL_RO rb_recommend 1 rb:{M} <k> <alpha> <x_1> ... <x_d> [options]

KEYS[1]   the model root hash rb:{M}; the only key read.
ARGV[1]   k, an integer >= 1: how many products to return (fewer if the
          model or the candidate list has fewer).
ARGV[2]   alpha, a finite number >= 0: the weight of the exploration bonus.
ARGV[3..] the d context values x_1..x_d (d is the model's dimension), then
          any of these options, each at most once, keywords case-insensitive:
  CANDIDATES <n> <id_1>..<id_n>  score only these products, in this order of
          precedence on ties; a product the model has never seen is scored
          as a fresh arm (theta = 0, A^-1 = I/lambda). Duplicates count once.
  EXCLUDE <n> <id_1>..<id_n>     never return these products; unknown ids
          are ignored.
  SEED <s>  an integer 0..2147483646: order equal scores at random, the
          same way for the same seed (0, the default: in arm order).

Reply: a flat array id_1, score_1, ..., id_k, score_k, best first. Scores are
decimal strings with 17 significant digits (Lua numbers returned to Redis
would be truncated to integers). Equal scores keep the model's arm order
(or the candidate order) or with a seed s, the order of their tie keys
((a * i + c) mod p)^2 mod p, p = 2^31 - 1, of their index i (the arm's, or
the position among the candidates scored, duplicates and excluded ones
removed), then of i, where u = 48271 s, a = u^2 and c = u^3 mod p: a
different order per seed (docs/FORMAT.md; model/linucb's Ties is the same).

score = x.theta + alpha * sqrt(x' A^-1 x), computed over the non-zero
entries of x only, from the columnar layout described in docs/FORMAT.md; if
the model declares one-hot groups and x is one-hot in each, from rows of
per-arm values folded for x's pattern instead (and for a candidate list,
from per-product rows).

Errors (returned as Redis errors, never raised):
  NOMODEL  no model at KEYS[1]
  BADMODEL the model's data is missing, malformed or of another format version
           (this script reads formats 2 and 3)
  BADARG   a malformed call: wrong number of context values, a value that is
           not a finite number, k < 1, alpha < 0, an unknown option, a SEED
           out of range, a context or alpha so large that the scores
           would overflow.

The script runs in phases, local functions called in order by main at the
bottom: metadata, arguments, options, pattern (is x one-hot in the model's
groups, so that its folded values serve), then for a candidate list
rowlayout, candidates and scorerows, else exclusions, the scan of the
blocks (scanfolded or scancolumns) and armids; then reply. Each phase
returns an error reply or nil, then its results as values: tables built to
carry them would cost ~0.1 microseconds per field and call. The score of
an arm from its folded values is written once, in the kernel folded();
scanfolded and scorerows compute the means of the reference shop's layout
in line (see there why).

It shares no code with write.lua: Redis scripts cannot require, and this
file is loaded exactly as it is (its SHA1 is the name EVALSHA calls it by,
and clients may load it from the file themselves, README.md), so a common
prelude would have to be pasted in by every loader. The few lines both
hold (err, the format version) are copies. What the two agree on (the
fields, the packed gmap, the format versions) is the contract of
docs/FORMAT.md, which the store tests check by writing with one script and
reading with the other.
]]

local FORMAT = '3' -- and '2', scored from its general layout (docs/FORMAT.md)
local root = KEYS[1]
local huge = math.huge
local sqrt = math.sqrt
local tonumber, tostring = tonumber, tostring
local fmt = string.format
local unpack_values = struct.unpack
local MEANS8, PATS8 = '<' .. string.rep('d', 24), '<dddddddd' -- theta_c and theta_P of 8 arms (three continuous features)

local function err(code, msg, ...)
  return redis.error_reply(code .. ' ' .. fmt(msg, ...))
end

local function finite(v)
  return v ~= nil and v == v and v ~= huge and v ~= -huge
end

local function integer(s)
  if s == nil then return nil end
  local v = tonumber(s)
  if v == nil or v ~= v or v == huge or v == -huge or v ~= math.floor(v) then return nil end
  return v
end

-- hmget returns the values of the root's fields (a list) in order: one
-- HMGET, or one per 4,000 fields for longer lists (unpack() of about 8,000
-- values overflows Lua's C stack).
local function hmget(fields)
  if #fields <= 4000 then return redis.call('HMGET', root, unpack(fields)) end
  local out = {}
  for from = 1, #fields, 4000 do
    local part = redis.call('HMGET', root, unpack(fields, from, math.min(from + 3999, #fields)))
    for i = 1, #part do out[from + i - 1] = part[i] end
  end
  return out
end

-- metadata returns the model's root fields that a call needs: d, lambda, n
-- (arms), B (arms per block), and as stored format, groups, fpats and gmap.
local function metadata()
  if root == nil then
    return err('BADARG', 'expected 1 key (the model root rb:{M}), got 0')
  end
  local meta = redis.call('HMGET', root, 'format', 'dim', 'lambda', 'arms', 'block', 'groups', 'fpats', 'gmap')
  if not meta[1] then
    return err('NOMODEL', 'no model at %s', root)
  end
  if meta[1] ~= FORMAT and meta[1] ~= '2' then
    return err('BADMODEL', '%s has format %s, this script reads formats 2 and %s', root, tostring(meta[1]), FORMAT)
  end
  local d, lambda, n, B = integer(meta[2]), tonumber(meta[3]), integer(meta[4]), integer(meta[5])
  if not d or d < 1 or not finite(lambda) or lambda <= 0 or not n or n < 0 or not B or B < 1 then
    return err('BADMODEL', '%s has malformed metadata (dim, lambda, arms, block)', root)
  end
  return nil, d, lambda, n, B, meta[1], meta[6], meta[7], meta[8]
end

-- arguments returns k, alpha, the context x, S (the indexes of x's
-- non-zero entries, in order), xxl (|x|^2 / lambda) and bound (below).
local function arguments(d, lambda)
  local nargs = #ARGV
  if nargs < 2 + d then
    return err('BADARG', 'expected k, alpha and %d context values, got %d context values', d, math.max(nargs - 2, 0))
  end
  local k = integer(ARGV[1])
  if not k or k < 1 then
    return err('BADARG', 'k must be an integer >= 1, got %s', ARGV[1])
  end
  local alpha = tonumber(ARGV[2])
  if not finite(alpha) or alpha < 0 then
    return err('BADARG', 'alpha must be a finite number >= 0, got %s', ARGV[2])
  end
  local x, S = {}, {}
  for i = 1, d do
    local v = tonumber(ARGV[2 + i])
    if not finite(v) then
      return err('BADARG', 'context value %d (%s) is not a finite number', i, ARGV[2 + i])
    end
    x[i] = v
    if v ~= 0 then S[#S + 1] = i end
  end
  -- |x|^2 / lambda bounds every arm's x' A^-1 x: a fresh arm's exactly, the
  -- others' from above, since every arm's A = lambda I + sum x x' is at least
  -- lambda I. So score <= mean + bound with bound = alpha |x| / sqrt(lambda)
  -- (widened by 1e-6 against rounding). Once the top-k is full, an arm with
  -- mean + bound <= the bar could not enter it (unseeded, entry needs a
  -- strictly better score than the k-th; seeded, the bar is below the k-th,
  -- see topk): the scan and the candidate path decode only its mean. The
  -- result is the same as scoring every arm, ties included.
  local xx = 0
  for p = 1, #S do xx = xx + x[S[p]] * x[S[p]] end
  local xxl = xx / lambda
  local bound = alpha * xxl ^ 0.5 * (1 + 1e-6)
  -- Finite inputs whose scores would overflow (a sum over up to |S|^2 terms
  -- of |x|^2 / lambda, or the bonus bound) have no answer: an infinite or NaN
  -- score would rank wrongly or drop arms.
  if not finite(xxl * (#S * #S + 1)) or not finite(bound) then
    return err('BADARG', 'context or alpha too large: the scores would overflow a double')
  end
  return nil, k, alpha, x, S, xxl, bound
end

-- options returns where the options' lists are in ARGV: cfrom..cto the
-- candidates', efrom..eto the exclusions' (nil if not given), and the
-- seed (0 if not given).
local function options(d)
  local nargs = #ARGV
  local cfrom, cto, efrom, eto, seed
  local pos = 3 + d
  while pos <= nargs do
    local opt = string.upper(ARGV[pos])
    if opt == 'SEED' then
      if seed then return err('BADARG', 'SEED given twice') end
      seed = integer(ARGV[pos + 1])
      if not seed or seed < 0 or seed > 2147483646 then
        return err('BADARG', 'SEED must be followed by an integer 0..2147483646, got %s', tostring(ARGV[pos + 1]))
      end
      pos = pos + 2
    elseif opt ~= 'CANDIDATES' and opt ~= 'EXCLUDE' then
      if tonumber(ARGV[pos]) then
        return err('BADARG', 'too many context values: the model has dimension %d', d)
      end
      return err('BADARG', 'unknown option %s (expected CANDIDATES, EXCLUDE or SEED)', ARGV[pos])
    else
      local cnt = integer(ARGV[pos + 1])
      if not cnt or cnt < 0 or pos + 1 + cnt > nargs then
        return err('BADARG', '%s must be followed by a count and that many ids', opt)
      end
      if opt == 'CANDIDATES' then
        if cfrom then return err('BADARG', 'CANDIDATES given twice') end
        cfrom, cto = pos + 2, pos + 1 + cnt
      else
        if efrom then return err('BADARG', 'EXCLUDE given twice') end
        efrom, eto = pos + 2, pos + 1 + cnt
      end
      pos = pos + 2 + cnt
    end
  end
  return nil, cfrom, cto, efrom, eto, seed or 0
end

-- pattern returns x's one-hot pattern in the model's groups (docs/FORMAT.md),
-- or false if the call takes the general layout. If the model declares
-- groups and x has exactly one 1 (and otherwise zeros) in every group (at
-- most one in an optional group), x's pattern pid selects per-arm folded
-- values, and the score needs only those and the continuous features' (the
-- features in no group): per arm, nc + nc(nc+1)/2 continuous values
-- (theta_c, then A^-1 over them, upper triangle row by row) and 2 + nc
-- pattern values (theta_P, W_P, V_P,c), stored as rows. The pattern holds
-- pid, npat (the number of patterns), nc, ntri (nc(nc+1)/2), xc (x over the
-- continuous features) and qc (their quadratic coefficients: xc_i^2 on the
-- diagonal, 2 xc_i xc_j above, row by row).
local function pattern(d, x, ns, format, groupsjson, gmap)
  if not groupsjson or groupsjson == '[]' then return nil, false end
  -- gv: the groups as numbers: their count, then per group its size, 1 if
  -- optional (else 0) and its 0-based feature indexes; from the packed
  -- field gmap (one struct.unpack), else decoded from the JSON in groups
  -- (a model whose writer did not add gmap; several microseconds more).
  local gv
  if gmap then
    if #gmap % 2 ~= 0 or #gmap < 2 or #gmap > 2 * (1 + 3 * d) then -- a count, and at most 2 + 1 values per feature
      return err('BADMODEL', '%s has a malformed gmap', root)
    end
    gv = { unpack_values('<' .. string.rep('H', #gmap / 2), gmap) }
    gv[#gv] = nil -- struct.unpack's next position
  else
    local ok, groups = pcall(cjson.decode, groupsjson)
    if not ok or type(groups) ~= 'table' then
      return err('BADMODEL', '%s has malformed groups', root)
    end
    gv = { #groups }
    for g = 1, #groups do
      if type(groups[g]) ~= 'table' or type(groups[g].features) ~= 'table' then
        return err('BADMODEL', '%s has malformed groups', root)
      end
      local grp = groups[g].features
      gv[#gv + 1] = #grp
      gv[#gv + 1] = groups[g].optional == true and 1 or 0
      for p = 1, #grp do gv[#gv + 1] = grp[p] end
    end
  end
  local ingroup, stride, at, pid = {}, 1, 2, 0
  local fast = true
  for g = 1, gv[1] do
    local size, optional = gv[at], gv[at + 1] == 1
    if not size or at + 1 + size > #gv then
      return err('BADMODEL', '%s has malformed groups', root)
    end
    local pos = nil
    for p = 1, size do
      local f = gv[at + 1 + p]
      if type(f) ~= 'number' or f < 0 or f >= d then
        return err('BADMODEL', '%s has malformed groups', root)
      end
      local v = x[f + 1]
      ingroup[f + 1] = true
      if v ~= 0 then
        if v ~= 1 or pos then fast = false end
        pos = p - 1
      end
    end
    if not pos then
      if optional then pos = size else fast = false end -- the "none" digit
    end
    pid = pid + (pos or 0) * stride
    stride = stride * (size + (optional and 1 or 0))
    at = at + 2 + size
  end
  if at ~= #gv + 1 then
    return err('BADMODEL', '%s has malformed groups', root)
  end
  local xc = {}
  for i = 1, d do
    if not ingroup[i] then xc[#xc + 1] = x[i] end
  end
  local nc = #xc
  local ntri = nc * (nc + 1) / 2
  -- Rows hold every continuous feature, columns only x's non-zero entries:
  -- use the rows unless they are much longer (a value in a row costs about
  -- half a column term).
  fast = fast and 2 + 2 * nc + ntri <= 2 * (ns + ns * (ns + 1) / 2)
  -- A format 2 model's rows are laid out otherwise: its general layout
  -- serves until its next write migrates it (docs/FORMAT.md).
  if not fast or format ~= FORMAT then return nil, false end
  local qc = {}
  for i = 1, nc do
    for j = i, nc do qc[#qc + 1] = (i == j) and xc[i] * xc[i] or 2 * xc[i] * xc[j] end
  end
  return nil, { pid = pid, npat = stride, nc = nc, ntri = ntri, xc = xc, qc = qc }
end

-- The top-k so far: items (arm indexes or candidate positions, offered in
-- increasing order) and their scores. topk(k, seed) returns offer(item, s),
-- which returns the score to beat (bar: -inf until the top-k is full), and
-- ranked(), which returns the items and their scores best first. Unseeded
-- (seed 0), equal scores keep the order of arrival: a new score enters
-- only if strictly better than the k-th, and callers offer only scores
-- above the bar. Seeded, equal scores are ordered by the items' tie keys
-- (the header), computed only when two scores are equal: an item whose
-- score equals the k-th may still enter, so the bar offer returns is
-- below the k-th by a few units in the last place (lowered), and offer
-- itself rejects the scores that do not enter; the callers' tests
-- (s > bar, and the pruning bound's m + bound > bar) stay as they are.
-- Up to HEAPK it is a list kept sorted, best first (an insertion costs
-- O(k): cheapest for the few items a page shows); beyond, a binary min-heap
-- whose root is the entry a better score evicts (O(log k) per entry),
-- sorted once by ranked(). A sorted list at k in the thousands over a
-- large catalogue would hold Redis, which serves nothing else meanwhile,
-- for seconds (docs/BENCHMARKS.md, large k).
local HEAPK = 32
local P31 = 2147483647 -- the prime 2^31 - 1 tie keys are computed modulo

-- mulmod returns u * v mod P31 for integers 0 <= u, v < P31, exactly: v is
-- split in 16-bit halves so that every intermediate stays below 2^49 (and
-- each quotient of % below 2^18, far from rounding to the next integer).
local function mulmod(u, v)
  local vl = v % 65536
  return ((u * ((v - vl) / 65536)) % P31 * 65536 + u * vl) % P31
end

-- tiekeys returns the tie key functions of seed, key and kept (below):
-- key(item) = ((a * i + c) mod
-- P31)^2 mod P31 of the item's 0-based index i = item - 1 (i < P31), with
-- mulmod's arithmetic in line. The affine map alone would give few orders
-- of a small set of indexes (rotations of a few sortings of a * i); the
-- square scrambles them. Two items share a key only if a (i + j) + 2c is a
-- multiple of P31 (rare); their order is then their arrival's.
local function tiekeys(seed)
  local u = mulmod(seed, 48271)
  local a = mulmod(u, u)
  local c = mulmod(a, u)
  local al = a % 65536
  local ah = (a - al) / 65536
  local function key(item)
    local i = item - 1
    local h = ((ah * i) % P31 * 65536 + al * i + c) % P31
    local hl = h % 65536
    return ((h * ((h - hl) / 65536)) % P31 * 65536 + h * hl) % P31
  end
  -- kept(item): key(item), remembered, for the items of the top-k, which
  -- are compared again and again (a tied item that does not enter is
  -- keyed once, without the table write).
  local memo = {}
  local function kept(item)
    local v = memo[item]
    if not v then
      v = key(item)
      memo[item] = v
    end
    return v
  end
  return key, kept
end

-- lowered returns a number below b by at least one unit in the last place
-- (and below 0 for 0): s > lowered(b) holds for every s >= b.
local EPS, TINY = 2 ^ -50, 2 ^ -1000
local function lowered(b)
  if b < 0 then return b + b * EPS - TINY end
  return b - b * EPS - TINY
end

local function topk(k, seed)
  local best, bests = {}, {}
  local bar = -huge
  local key, kept
  if seed ~= 0 then
    -- made on the first tie, so that a call without ties does not pay for
    -- them: the first call of either replaces both.
    key = function(item)
      key, kept = tiekeys(seed)
      return key(item)
    end
    kept = function(item)
      key, kept = tiekeys(seed)
      return kept(item)
    end
  end
  if k <= HEAPK and not key then
    local function offer(item, s)
      local m = #best
      if m == k then
        if not (s > bests[m]) then return bar end
      else
        m = m + 1
      end
      while m > 1 and bests[m - 1] < s do
        best[m], bests[m] = best[m - 1], bests[m - 1]
        m = m - 1
      end
      best[m], bests[m] = item, s
      if #best == k then bar = bests[k] end
      return bar
    end
    return offer, function() return best, bests end
  end
  if k <= HEAPK then
    local function offer(item, s)
      local m = #best
      local ks -- item's tie key, once needed
      if m == k then
        local w = bests[m]
        if s < w then return bar end
        if s == w then
          ks = key(item)
          if ks >= kept(best[m]) then return bar end -- an equal key: a later arrival
        end
      else
        m = m + 1
      end
      while m > 1 do
        local w = bests[m - 1]
        if w > s then break end
        if w == s then
          ks = ks or key(item)
          if kept(best[m - 1]) <= ks then break end -- an equal key: arrival order
        end
        best[m], bests[m] = best[m - 1], bests[m - 1]
        m = m - 1
      end
      best[m], bests[m] = item, s
      if #best == k then bar = lowered(bests[k]) end
      return bar
    end
    return offer, function() return best, bests end
  end
  -- after(i, j): on an equal score, item i ranks after item j (a later
  -- arrival, or with a seed a higher tie key).
  local after
  if key then
    after = function(i, j)
      local ki, kj = kept(i), kept(j)
      return ki > kj or (ki == kj and i > j)
    end
  else
    after = function(i, j) return i > j end
  end
  -- below(i, j): entry i ranks below entry j.
  local function below(i, j)
    local si, sj = bests[i], bests[j]
    return si < sj or (si == sj and after(best[i], best[j]))
  end
  local function swap(i, j)
    best[i], best[j] = best[j], best[i]
    bests[i], bests[j] = bests[j], bests[i]
  end
  local function offer(item, s)
    local m = #best
    if m < k then
      m = m + 1
      best[m], bests[m] = item, s
      while m > 1 do -- sift up
        local p = (m - m % 2) / 2
        if not below(m, p) then break end
        swap(m, p)
        m = p
      end
      if #best == k then bar = key and lowered(bests[1]) or bests[1] end
      return bar
    end
    local w = bests[1]
    if s < w or (s == w and after(item, best[1])) then return bar end
    best[1], bests[1] = item, s
    local i = 1
    while true do -- sift down
      local l, low = 2 * i, i
      if l <= m and below(l, low) then low = l end
      if l + 1 <= m and below(l + 1, low) then low = l + 1 end
      if low == i then break end
      swap(i, low)
      i = low
    end
    bar = key and lowered(bests[1]) or bests[1]
    return bar
  end
  local function ranked()
    local order = {}
    for i = 1, #best do order[i] = i end
    table.sort(order, function(a, b)
      local sa, sb = bests[a], bests[b]
      return sa > sb or (sa == sb and after(best[b], best[a]))
    end)
    local b, s = {}, {}
    for i, j in ipairs(order) do b[i], s[i] = best[j], bests[j] end
    return b, s
  end
  return offer, ranked
end

-- The scoring kernels, one per layout of an arm's values:
--   arm(item, bar, tp, po, tc, co, ta, ao, tw, wo)  scores one arm
--   full(item, m, bar, ta, ao, tw, wo)              the same, its mean m known
-- Each offers the arm (item) if its score beats bar, and returns the new
-- bar; arm() decodes the bonus only if the mean could beat bar (see bound).
-- The arm's values are at byte offsets of strings: folded() reads its
-- theta_P at po of tp, theta_c at co of tc, A^-1 over the continuous
-- features at ao of ta, and W_P and V_P,c at wo of tw (block rows, or a
-- folded row f: as all four); rowkernel() reads a row r:<id>: theta at co
-- of tc and the upper triangle of A^-1 at ao of ta (it has no full, and
-- ignores tp, po, tw, wo). They are closures over the query, made once per
-- call, shared by the scan and the candidates.

-- folded returns the kernel (arm, full) of the folded values of pattern pat.
local function folded(pat, alpha, bound, offer)
  local nc, ntri, xc, qc = pat.nc, pat.ntri, pat.xc, pat.qc
  if nc == 3 then
    -- Three continuous features (the reference shop's): every value in a
    -- local; the same sums in the same order as for other counts below.
    local x1, x2, x3 = xc[1], xc[2], xc[3]
    local y1, y2, y3 = 2 * x1, 2 * x2, 2 * x3
    local q11, q12, q13, q22, q23, q33 = qc[1], qc[2], qc[3], qc[4], qc[5], qc[6]
    local function full(item, m, bar, ta, ao, tw, wo)
      local a11, a12, a13, a22, a23, a33 = unpack_values('<dddddd', ta, ao)
      local wp, v1, v2, v3 = unpack_values('<dddd', tw, wo)
      local v = wp + y1 * v1 + y2 * v2 + y3 * v3 + q11 * a11 + q12 * a12 + q13 * a13 + q22 * a22 + q23 * a23 + q33 * a33
      if v < 0 then v = 0 end
      -- v ^ 0.5 is a VM operation; math.sqrt would be a function call per arm.
      local s = m + alpha * v ^ 0.5
      if s > bar then return offer(item, s) end
      return bar
    end
    local function arm(item, bar, tp, po, tc, co, ta, ao, tw, wo)
      local t1, t2, t3 = unpack_values('<ddd', tc, co)
      local m = unpack_values('<d', tp, po) + x1 * t1 + x2 * t2 + x3 * t3
      if m + bound > bar then return full(item, m, bar, ta, ao, tw, wo) end
      return bar
    end
    return arm, full
  end
  local tfmt, afmt, vfmt = '<' .. string.rep('d', nc), '<' .. string.rep('d', ntri), '<' .. string.rep('d', 1 + nc)
  local function full(item, m, bar, ta, ao, tw, wo)
    local av = { unpack_values(afmt, ta, ao) }
    local pv = { unpack_values(vfmt, tw, wo) }
    local v = pv[1]
    for i = 1, nc do v = v + 2 * xc[i] * pv[1 + i] end
    for t = 1, ntri do v = v + qc[t] * av[t] end
    if v < 0 then v = 0 end
    local s = m + alpha * v ^ 0.5
    if s > bar then return offer(item, s) end
    return bar
  end
  local function arm(item, bar, tp, po, tc, co, ta, ao, tw, wo)
    local tv = { unpack_values(tfmt, tc, co) }
    local m = unpack_values('<d', tp, po)
    for i = 1, nc do m = m + xc[i] * tv[i] end
    if m + bound > bar then return full(item, m, bar, ta, ao, tw, wo) end
    return bar
  end
  return arm, full
end

-- rowkernel returns the kernel (arm only) of the rows r:<id> of a model of
-- dimension d: theta (d doubles), then the upper triangle of A^-1
-- (row-major).
local function rowkernel(d, x, S, alpha, bound, offer)
  local ns = #S
  local dtri = d * (d + 1) / 2
  -- Positions (1-based, in doubles) of A^-1_ij in the triangle, and the
  -- quadratic-form coefficients: x_i^2 on the diagonal, 2 x_i x_j above.
  local qpos, qcoef = {}, {}
  for p = 1, ns do
    local i = S[p]
    for r = p, ns do
      local j = S[r]
      qpos[#qpos + 1] = (i - 1) * d - (i - 1) * (i - 2) / 2 + (j - i) + 1
      qcoef[#qcoef + 1] = (i == j) and x[i] * x[i] or 2 * x[i] * x[j]
    end
  end
  local nq = #qpos
  -- Decode a whole part of a row with one call when it is not much longer
  -- than what is needed (one C call per value costs about ten values
  -- decoded in bulk).
  local thetafmt, trifmt = '<' .. string.rep('d', d), '<' .. string.rep('d', dtri)
  local thetabulk, tribulk = d <= 10 * ns, dtri <= 10 * nq
  local function arm(item, bar, tp, po, tc, co, ta, ao)
    local m = 0
    if thetabulk then
      local v = { unpack_values(thetafmt, tc, co) }
      for p = 1, ns do m = m + x[S[p]] * v[S[p]] end
    else
      for p = 1, ns do m = m + x[S[p]] * unpack_values('<d', tc, co + 8 * S[p] - 8) end
    end
    if not (m + bound > bar) then return bar end
    local v = 0
    if tribulk then
      local t = { unpack_values(trifmt, ta, ao) }
      for p = 1, nq do v = v + qcoef[p] * t[qpos[p]] end
    else
      for p = 1, nq do v = v + qcoef[p] * unpack_values('<d', ta, ao + 8 * qpos[p] - 8) end
    end
    if v < 0 then v = 0 end
    local s = m + alpha * v ^ 0.5
    if s > bar then return offer(item, s) end
    return bar
  end
  return arm
end

-- candidates returns the candidate ids in order, each once, none excluded,
-- and their rows' field names (prefix .. id).
local function candidates(cfrom, cto, efrom, eto, prefix)
  local excluded = {}
  if efrom then
    for i = efrom, eto do excluded[ARGV[i]] = true end
  end
  local ids, fields, m = {}, {}, 0
  for i = cfrom, cto do
    local id = ARGV[i]
    if not excluded[id] then
      excluded[id] = true
      m = m + 1
      ids[m], fields[m] = id, prefix .. id
    end
  end
  return ids, fields
end

-- exclusions returns the set of the indexes (1-based) of the arms never to
-- return: those of the ids ARGV[efrom..eto] (unknown ids are ignored).
local function exclusions(n, efrom, eto)
  local skip = {}
  if efrom and eto >= efrom then
    local fields = {}
    for i = efrom, eto do fields[#fields + 1] = 'ix:' .. ARGV[i] end
    local idx = hmget(fields)
    for i = 1, #idx do
      if idx[i] then
        local v = integer(idx[i])
        if not v or v < 0 or v >= n then
          return err('BADMODEL', 'index ix:%s of %s is malformed', ARGV[efrom + i - 1], root)
        end
        skip[v + 1] = true
      end
    end
  end
  return nil, skip
end

-- rowlayout returns where a candidate's values are: its row is the field
-- prefix .. id, of rowlen bytes, with its values at the offsets po, ao, wo
-- of the kernel's arm() (and theta_c or theta at 1). With a pattern, the
-- folded rows f:<part>:<id> = the continuous values (theta_c, then A^-1
-- over them), then those of fpats patterns from part * fpats on; else the
-- rows r:<id>.
local function rowlayout(d, pat, fpats)
  if not pat then
    return nil, 'r:', 8 * (d + d * (d + 1) / 2), nil, 8 * d + 1, nil
  end
  local fq = integer(fpats)
  if not fq or fq < 1 then
    return err('BADMODEL', '%s has a malformed fpats', root)
  end
  local nc, pid = pat.nc, pat.pid
  local cbytes, pbytes = 8 * (nc + pat.ntri), 8 * (2 + nc)
  local part = math.floor(pid / fq)
  local po = cbytes + (pid - part * fq) * pbytes + 1
  return nil, 'f:' .. part .. ':', cbytes + math.min(fq, pat.npat - part * fq) * pbytes, po, 8 * nc + 1, po + 8
end

-- scorerows offers each candidate (its position in fields, the names of
-- the candidates' rows, rowlen bytes each) scored by the kernel (arm, full)
-- from its row, and a product the model has never seen as a fresh arm,
-- whose score is prior. With three continuous features (xc3 their values,
-- else nil) it computes the means in line and calls full() only for the
-- candidates the bound does not prune, as scanfolded does: a call of arm()
-- per candidate would cost ~3% of a call with 50 candidates.
local function scorerows(fields, rowlen, po, ao, wo, prior, bound, xc3, arm, full, offer)
  local rows = hmget(fields)
  local x1, x2, x3
  if xc3 then x1, x2, x3 = xc3[1], xc3[2], xc3[3] end
  local bar = -huge
  for c = 1, #fields do
    local row = rows[c]
    if not row then
      if prior > bar then bar = offer(c, prior) end
    elseif #row ~= rowlen then
      return err('BADMODEL', 'row %s of %s has %d bytes, want %d', fields[c], root, #row, rowlen)
    elseif x1 then
      local t1, t2, t3 = unpack_values('<ddd', row)
      local m = unpack_values('<d', row, po) + x1 * t1 + x2 * t2 + x3 * t3
      if m + bound > bar then bar = full(c, m, bar, row, ao, row, wo) end
    else
      bar = arm(c, bar, row, po, row, 1, row, ao, row, wo)
    end
  end
end

-- scanfolded offers every arm not in skip, scored by the kernel of pattern
-- pat (arm, full) from the pattern's block rows (docs/FORMAT.md): c:<b>
-- holds the arms' theta_c, a:<b> their A^-1 over the continuous features,
-- p:<b>:<pid> their theta_P, w:<b>:<pid> their W_P and V_P,c. It skips the
-- exploration bonus of arms that cannot make the top-k (see bound): only
-- their means are decoded, 4 values of 14 for the reference shop.
local function scanfolded(n, B, pat, bound, skip, arm, full)
  local nc, ntri, P = pat.nc, pat.ntri, tostring(pat.pid)
  local x1, x2, x3 = pat.xc[1], pat.xc[2], pat.xc[3]
  local bar = -huge
  for blk = 0, math.ceil(n / B) - 1 do
    local cnt, base, b = math.min(B, n - blk * B), blk * B, tostring(blk)
    local raw = redis.call('HMGET', root, 'c:' .. b, 'a:' .. b, 'p:' .. b .. ':' .. P, 'w:' .. b .. ':' .. P)
    local tc, ta, tp, tw = raw[1], raw[2], raw[3], raw[4]
    if not tc or #tc ~= 8 * nc * cnt or not ta or #ta ~= 8 * ntri * cnt
        or not tp or #tp ~= 8 * cnt or not tw or #tw ~= 8 * (1 + nc) * cnt then
      return err('BADMODEL', 'rows c:%s, a:%s, p:%s:%s or w:%s:%s of %s are missing or have the wrong length', b, b, b, P, b, P, root)
    end
    local a = 1
    if nc == 3 then
      -- The reference shop's: the means of eight arms from two
      -- struct.unpack calls, with arm()'s arithmetic in line, and full()
      -- only for the arms the bound does not prune. Unrolled on purpose: a
      -- loop over the eight would need a table, and a call of arm() per arm
      -- would cost about as much as the rest of a pruned arm.
      while a + 7 <= cnt do
        local c11, c12, c13, c21, c22, c23, c31, c32, c33, c41, c42, c43,
          c51, c52, c53, c61, c62, c63, c71, c72, c73, c81, c82, c83 = unpack_values(MEANS8, tc, 24 * a - 23)
        local p1, p2, p3, p4, p5, p6, p7, p8 = unpack_values(PATS8, tp, 8 * a - 7)
        local i, ao, wo = base + a, 48 * a - 47, 32 * a - 31 -- arm a's index and offsets in ta and tw
        local m = p1 + x1 * c11 + x2 * c12 + x3 * c13
        if m + bound > bar and not skip[i] then bar = full(i, m, bar, ta, ao, tw, wo) end
        m = p2 + x1 * c21 + x2 * c22 + x3 * c23
        if m + bound > bar and not skip[i + 1] then bar = full(i + 1, m, bar, ta, ao + 48, tw, wo + 32) end
        m = p3 + x1 * c31 + x2 * c32 + x3 * c33
        if m + bound > bar and not skip[i + 2] then bar = full(i + 2, m, bar, ta, ao + 96, tw, wo + 64) end
        m = p4 + x1 * c41 + x2 * c42 + x3 * c43
        if m + bound > bar and not skip[i + 3] then bar = full(i + 3, m, bar, ta, ao + 144, tw, wo + 96) end
        m = p5 + x1 * c51 + x2 * c52 + x3 * c53
        if m + bound > bar and not skip[i + 4] then bar = full(i + 4, m, bar, ta, ao + 192, tw, wo + 128) end
        m = p6 + x1 * c61 + x2 * c62 + x3 * c63
        if m + bound > bar and not skip[i + 5] then bar = full(i + 5, m, bar, ta, ao + 240, tw, wo + 160) end
        m = p7 + x1 * c71 + x2 * c72 + x3 * c73
        if m + bound > bar and not skip[i + 6] then bar = full(i + 6, m, bar, ta, ao + 288, tw, wo + 192) end
        m = p8 + x1 * c81 + x2 * c82 + x3 * c83
        if m + bound > bar and not skip[i + 7] then bar = full(i + 7, m, bar, ta, ao + 336, tw, wo + 224) end
        a = a + 8
      end
    end
    -- One arm at a time: every arm for other numbers of continuous
    -- features, the last few of the block for three.
    for a = a, cnt do
      if not skip[base + a] then
        bar = arm(base + a, bar, tp, 8 * a - 7, tc, 8 * nc * (a - 1) + 1, ta, 8 * ntri * (a - 1) + 1, tw, 8 * (1 + nc) * (a - 1) + 1)
      end
    end
  end
end

-- acc[a] += sum of coef[f] * cols[f][a] for f in from..to. The arithmetic is
-- cheap next to Lua's loop and table overhead, so each pass over the arms
-- folds up to seven columns, with one loop body per width (no padding).
local function accumulate(acc, cnt, cols, coef, from, to)
  local f = from
  while f <= to do
    local w = to - f + 1
    if w > 7 then w = 7 end
    local T1, T2, T3, T4, T5, T6, T7 = cols[f], cols[f + 1], cols[f + 2], cols[f + 3], cols[f + 4], cols[f + 5], cols[f + 6]
    local c1, c2, c3, c4, c5, c6, c7 = coef[f], coef[f + 1], coef[f + 2], coef[f + 3], coef[f + 4], coef[f + 5], coef[f + 6]
    if w == 7 then
      for a = 1, cnt do
        acc[a] = acc[a] + c1 * T1[a] + c2 * T2[a] + c3 * T3[a] + c4 * T4[a] + c5 * T5[a] + c6 * T6[a] + c7 * T7[a]
      end
    elseif w == 6 then
      for a = 1, cnt do
        acc[a] = acc[a] + c1 * T1[a] + c2 * T2[a] + c3 * T3[a] + c4 * T4[a] + c5 * T5[a] + c6 * T6[a]
      end
    elseif w == 5 then
      for a = 1, cnt do acc[a] = acc[a] + c1 * T1[a] + c2 * T2[a] + c3 * T3[a] + c4 * T4[a] + c5 * T5[a] end
    elseif w == 4 then
      for a = 1, cnt do acc[a] = acc[a] + c1 * T1[a] + c2 * T2[a] + c3 * T3[a] + c4 * T4[a] end
    elseif w == 3 then
      for a = 1, cnt do acc[a] = acc[a] + c1 * T1[a] + c2 * T2[a] + c3 * T3[a] end
    elseif w == 2 then
      for a = 1, cnt do acc[a] = acc[a] + c1 * T1[a] + c2 * T2[a] end
    else
      for a = 1, cnt do acc[a] = acc[a] + c1 * T1[a] end
    end
    f = f + w
  end
end

-- scancolumns offers every arm not in skip, scored from the columnar layout
-- (docs/FORMAT.md): t:<b>:<i> holds theta_i and q:<b>:<i>:<j> (i <= j)
-- holds A^-1_ij for the arms of block b, one little-endian double per arm.
-- The score needs, per arm, the terms coef * column over the non-zero
-- entries of x: names[f] is the field suffix of term f; terms 1..ns make
-- the mean x.theta, the rest x' A^-1 x.
local function scancolumns(n, B, x, S, alpha, skip, offer)
  local ns = #S
  -- Decimal strings of 0..63, so that building the many field names formats
  -- no numbers (Lua's number-to-string conversion is a sprintf).
  local DEC = {[0]='0','1','2','3','4','5','6','7','8','9','10','11','12','13','14','15','16','17','18','19','20','21','22','23','24','25','26','27','28','29','30','31','32','33','34','35','36','37','38','39','40','41','42','43','44','45','46','47','48','49','50','51','52','53','54','55','56','57','58','59','60','61','62','63'}
  local function dec(i)
    return DEC[i] or tostring(i)
  end
  local kinds, names, coef = {}, {}, {}
  for p = 1, ns do
    kinds[p], names[p], coef[p] = 't:', ':' .. dec(S[p] - 1), x[S[p]]
  end
  for p = 1, ns do
    local i = S[p]
    for r = p, ns do
      local j = S[r]
      local f = #names + 1
      kinds[f], names[f] = 'q:', ':' .. dec(i - 1) .. ':' .. dec(j - 1)
      coef[f] = (i == j) and x[i] * x[i] or 2 * x[i] * x[j]
    end
  end
  local nf = #names
  local bar = -huge
  for blk = 0, math.ceil(n / B) - 1 do
    local cnt, base, b = math.min(B, n - blk * B), blk * B, dec(blk)
    local mean, quad = {}, {}
    for a = 1, cnt do mean[a] = 0; quad[a] = 0 end
    if nf > 0 then
      local fields = {}
      for f = 1, nf do fields[f] = kinds[f] .. b .. names[f] end
      local raw = redis.call('HMGET', root, unpack(fields))
      local vfmt = '<' .. string.rep('d', cnt)
      local cols = {}
      for f = 1, nf do
        local v = raw[f]
        if not v or #v ~= 8 * cnt then
          return err('BADMODEL', 'column %s of %s is missing or has the wrong length', fields[f], root)
        end
        cols[f] = { unpack_values(vfmt, v) }
      end
      accumulate(mean, cnt, cols, coef, 1, ns)
      accumulate(quad, cnt, cols, coef, ns + 1, nf)
    end
    for a = 1, cnt do
      local qd = quad[a]
      if qd < 0 then qd = 0 end
      local s = mean[a] + alpha * qd ^ 0.5
      if s > bar and not skip[base + a] then bar = offer(base + a, s) end
    end
  end
end

-- armids returns the product ids of arms (1-based indexes).
local function armids(arms)
  local fields = {}
  for i = 1, #arms do fields[i] = 'id:' .. tostring(arms[i] - 1) end
  local ids = hmget(fields)
  for i = 1, #ids do
    if not ids[i] then
      return err('BADMODEL', 'arm %d of %s has no id', arms[i] - 1, root)
    end
  end
  return nil, ids
end

-- reply returns the ids and their scores, interleaved (see the header).
local function reply(ids, scores)
  local out = {}
  for i = 1, #ids do
    out[2 * i - 1] = ids[i]
    out[2 * i] = fmt('%.17g', scores[i])
  end
  return out
end

-- main: the phases in order. Each returns an error reply or nil first,
-- then its results.
local e, d, lambda, n, B, format, groups, fpats, gmap = metadata()
if e then return e end
local k, alpha, x, S, xxl, bound
e, k, alpha, x, S, xxl, bound = arguments(d, lambda)
if e then return e end
local cfrom, cto, efrom, eto, seed
e, cfrom, cto, efrom, eto, seed = options(d)
if e then return e end
local pat
e, pat = pattern(d, x, #S, format, groups, gmap)
if e then return e end
local offer, ranked = topk(k, seed)

if cfrom then
  local prefix, rowlen, po, ao, wo
  e, prefix, rowlen, po, ao, wo = rowlayout(d, pat, fpats)
  if e then return e end
  local ids, fields = candidates(cfrom, cto, efrom, eto, prefix)
  if #ids == 0 then return {} end
  local arm, full, xc3
  if pat then
    arm, full = folded(pat, alpha, bound, offer)
    if pat.nc == 3 then xc3 = pat.xc end
  else
    arm = rowkernel(d, x, S, alpha, bound, offer)
  end
  e = scorerows(fields, rowlen, po, ao, wo, alpha * sqrt(xxl), bound, xc3, arm, full, offer)
  if e then return e end
  local items, scores = ranked()
  for i = 1, #items do items[i] = ids[items[i]] end
  return reply(items, scores)
end

if n == 0 then return {} end
local skip
e, skip = exclusions(n, efrom, eto)
if e then return e end
if pat then
  e = scanfolded(n, B, pat, bound, skip, folded(pat, alpha, bound, offer))
else
  e = scancolumns(n, B, x, S, alpha, skip, offer)
end
if e then return e end
local arms, scores = ranked()
if #arms == 0 then return {} end
local ids
e, ids = armids(arms)
if e then return e end
return reply(ids, scores)
