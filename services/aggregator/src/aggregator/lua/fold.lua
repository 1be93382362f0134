-- Folds groups of summaries into the live state, each exactly once (see fold.py for the ARGV
-- layout and the same semantics in Python, README.md for the keys). A group is one or more
-- summaries' offset ranges and ONE block of partials (merged by the caller when there are
-- several): it is applied only when every range continues its partition's watermark, checked in
-- order. Redis runs a script atomically: a group's fold and its watermarks move together or not
-- at all. Returns one outcome per group: 1 applied, 0 duplicate (every range already folded),
-- -1 wait (a predecessor is missing), -2 overlap (breaks the chaining contract; for a merged
-- group, any other mix: the caller then folds its summaries one by one).
-- Keys are derived from the prefix inside the script: fine on one Redis node; on Redis Cluster
-- the prefix must be a hash tag such as {smartgrid} so every key lands in one slot.
local P = ARGV[1]
local live_ttl = tonumber(ARGV[2])
local region_ttl = tonumber(ARGV[3])
local late_ttl = tonumber(ARGV[4])
-- Newest event second that may be folded: the wall clock plus the allowed clock skew. A second
-- beyond it (a meter clock far ahead that ingest did not refuse) is counted and dropped, so the
-- newest second, and with it the dashboard's "now", never runs ahead of the wall clock.
local horizon = tonumber(ARGV[5])
local n = tonumber(ARGV[6])

local wm_key = P .. ':agg:wm'
local dirty_key = P .. ':agg:dirty'
local stats_key = P .. ':agg:stats'
local status_key = P .. ':status'
local meter_status_key = P .. ':meter_status'
local region_meters_key = P .. ':region_meters'
local geo_key = P .. ':geo'
local alerts_key = P .. ':alerts'
local latest = tonumber(redis.call('GET', P .. ':agg:latest') or '0')
-- A newest second beyond the horizon (left by a version without it) is forgotten: the next fold
-- that applies sets it again.
if latest > horizon then latest = 0 end

-- min/max are stored as the caller's exact strings: tostring() of a Lua number keeps 14 digits.
local function fold_extremes(key, min_field, min_value, max_field, max_value)
  local current = redis.call('HMGET', key, min_field or max_field, max_field)
  if min_field then
    if not current[1] or tonumber(min_value) < tonumber(current[1]) then
      redis.call('HSET', key, min_field, min_value)
    end
    if not current[2] or tonumber(max_value) > tonumber(current[2]) then
      redis.call('HSET', key, max_field, max_value)
    end
  elseif not current[1] or tonumber(max_value) > tonumber(current[1]) then
    redis.call('HSET', key, max_field, max_value)
  end
end

local function alert_indexes(status, region)
  return {
    P .. ':alerts:all',
    P .. ':alerts:s:' .. status,
    P .. ':alerts:r:' .. region,
    P .. ':alerts:sr:' .. string.len(status) .. ':' .. status .. ':' .. region,
  }
end

local function fold_meter(meter, region, status, at_ms, last_ms, first_seen)
  local held = redis.call('HGET', meter_status_key, meter)
  -- New to its partition, yet known: its readings arrive on several partitions (a producer that
  -- does not key by meter_id), or an ingest lost its meter state. Counted; the aggregator warns.
  if held and first_seen == '1' then redis.call('HINCRBY', stats_key, 'meters_new_again', 1) end
  -- Counts move from the status the aggregator holds; ingest's `previous` is informational.
  if not held then
    redis.call('HINCRBY', region_meters_key, region, 1)
  elseif held ~= status then
    redis.call('HINCRBY', status_key, held, -1)
  end
  if held ~= status then
    redis.call('HINCRBY', status_key, status, 1)
    redis.call('SET', P .. ':agg:dirty_status', '1')
    redis.call('HSET', meter_status_key, meter, status)
  end
  local raw = redis.call('HGET', alerts_key, meter)
  local alert = raw and cjson.decode(raw)
  if alert and status ~= 'ok' and alert.status == status and alert.region == region then
    -- The same alert reported again: only its last reading moves; its indexes stay.
    alert.last = last_ms
    redis.call('HSET', alerts_key, meter, cjson.encode(alert))
    return
  end
  if alert then
    for _, key in ipairs(alert_indexes(alert.status, alert.region)) do redis.call('ZREM', key, meter) end
  end
  if status == 'ok' then
    if alert then redis.call('HDEL', alerts_key, meter) end
    return
  end
  local since = at_ms
  if alert and alert.status == status then since = alert.since end
  -- Times as strings: cjson writes numbers with 14 significant digits.
  redis.call('HSET', alerts_key, meter,
    cjson.encode({status = status, since = since, last = last_ms, region = region}))
  for _, key in ipairs(alert_indexes(status, region)) do redis.call('ZADD', key, tonumber(since), meter) end
end

-- Outcome of a group's ranges (ARGV[i + 1] = n, then n x (source, first, last, chained))
-- against the watermarks, each range checked against the one before it in the group. With no
-- watermark yet only a chain's first summary (chained = 0) applies; a chained one waits.
local function classify(i)
  local n = tonumber(ARGV[i + 1])
  local seen = {}
  local applied, duplicates, waits = 0, 0, 0
  for r = 0, n - 1 do
    local source = ARGV[i + 2 + 4 * r]
    local first, last = tonumber(ARGV[i + 3 + 4 * r]), tonumber(ARGV[i + 4 + 4 * r])
    local wm = seen[source]
    if wm == nil then
      wm = redis.call('HGET', wm_key, source)
      wm = wm and tonumber(wm) or false
    end
    local chained = ARGV[i + 5 + 4 * r] == '1'
    if (wm and first == wm + 1) or (not wm and not chained) then
      applied = applied + 1
      seen[source] = last
    elseif not wm or first > wm + 1 then
      waits = waits + 1
    elseif last <= wm then
      duplicates = duplicates + 1
    else
      return -2, n
    end
  end
  if applied == n then return 1, n end
  if duplicates == n then return 0, n end
  if waits > 0 and duplicates == 0 then return -1, n end
  return -2, n
end

-- Apply one block of partials starting at ARGV[i].
local function apply_block(i)
  -- Seconds: older than the newest minus the retention are gone from the live view.
  local newest = latest
  local ns = tonumber(ARGV[i]); i = i + 1
  for _ = 1, ns do
    local second = tonumber(ARGV[i])
    if second > horizon then
      redis.call('HINCRBY', stats_key, 'future_seconds', 1)
    elseif second < latest - live_ttl then
      redis.call('HINCRBY', stats_key, 'too_late_seconds', 1)
    else
      if second > newest then newest = second end
      local key = P .. ':sec:' .. ARGV[i]
      redis.call('HINCRBYFLOAT', key, 'sum', ARGV[i + 1])
      redis.call('HINCRBY', key, 'count', ARGV[i + 2])
      fold_extremes(key, 'min', ARGV[i + 3], 'max', ARGV[i + 4])
      redis.call('EXPIRE', key, live_ttl)
      redis.call('SADD', dirty_key, ARGV[i])
    end
    i = i + 5
  end
  local nm = tonumber(ARGV[i]); i = i + 1
  for _ = 1, nm do
    local minute = tonumber(ARGV[i])
    if minute >= latest - live_ttl - 60 and minute <= horizon then
      local key = P .. ':min:' .. ARGV[i]
      redis.call('HINCRBYFLOAT', key, 'sum', ARGV[i + 1])
      redis.call('HINCRBY', key, 'count', ARGV[i + 2])
      fold_extremes(key, 'min', ARGV[i + 3], 'max', ARGV[i + 4])
      redis.call('EXPIRE', key, live_ttl + 120)
    end
    i = i + 5
  end
  local nr = tonumber(ARGV[i]); i = i + 1
  for _ = 1, nr do
    local second, region = ARGV[i], ARGV[i + 1]
    local new_meters = tonumber(ARGV[i + 8])
    local k_meters = tonumber(ARGV[i + 9])
    if tonumber(second) > horizon then
      redis.call('HINCRBY', stats_key, 'future_regions', 1)
    elseif tonumber(second) < latest - region_ttl then
      redis.call('HINCRBY', stats_key, 'too_late_regions', 1)
    else
      local key = P .. ':rsec:' .. second
      redis.call('HINCRBYFLOAT', key, 'sum:' .. region, ARGV[i + 2])
      redis.call('HINCRBY', key, 'cnt:' .. region, ARGV[i + 3])
      fold_extremes(key, nil, nil, 'max:' .. region, ARGV[i + 4])
      if tonumber(ARGV[i + 7]) > 0 then
        redis.call('HINCRBYFLOAT', key, 'lat:' .. region, ARGV[i + 5])
        redis.call('HINCRBYFLOAT', key, 'lon:' .. region, ARGV[i + 6])
        redis.call('HINCRBY', key, 'geo:' .. region, ARGV[i + 7])
        redis.call('HINCRBYFLOAT', geo_key, 'lat:' .. region, ARGV[i + 5])
        redis.call('HINCRBYFLOAT', geo_key, 'lon:' .. region, ARGV[i + 6])
        redis.call('HINCRBY', geo_key, 'n:' .. region, ARGV[i + 7])
      end
      -- Version 2 summaries: meters new to the bucket, counted by ingest (one partition per
      -- meter), so distinct meters cost one HINCRBY per bucket, not a set insert per reading.
      if new_meters > 0 then
        redis.call('HINCRBY', key, 'mc:' .. region, new_meters)
      end
      -- Version 1 summaries (an ingest not yet upgraded): the bucket's meter ids, deduplicated
      -- in a set kept for the late window.
      if k_meters > 0 then
        local set_key = P .. ':rmet:' .. second .. ':' .. region
        local ids = {}
        for id in string.gmatch(ARGV[i + 10], '[^\n]+') do
          ids[#ids + 1] = id
          if #ids == 1000 then
            redis.call('SADD', set_key, unpack(ids))
            ids = {}
          end
        end
        if #ids > 0 then redis.call('SADD', set_key, unpack(ids)) end
        redis.call('EXPIRE', set_key, late_ttl)
        -- After the late window the set is gone: keep the larger count (a lower bound).
        local distinct = redis.call('SCARD', set_key)
        local stored = tonumber(redis.call('HGET', key, 'mc:' .. region) or '0')
        if distinct > stored then redis.call('HSET', key, 'mc:' .. region, distinct) end
      end
      redis.call('EXPIRE', key, region_ttl)
      redis.call('SADD', dirty_key, second)
    end
    i = i + 11
  end
  local nu = tonumber(ARGV[i]); i = i + 1
  for _ = 1, nu do
    fold_meter(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5])
    i = i + 6
  end
  if newest > latest then
    latest = newest
    redis.call('SET', P .. ':agg:latest', newest)
  end
end

local results = {}
local i = 7
for k = 1, n do
  local span = tonumber(ARGV[i])
  local outcome, ranges = classify(i)
  results[k] = outcome
  -- A merged group that is not applied changes nothing: its summaries are folded (and
  -- counted) one by one next.
  if outcome == 0 and ranges == 1 then redis.call('HINCRBY', stats_key, 'duplicates', 1) end
  if outcome == -2 and ranges == 1 then redis.call('HINCRBY', stats_key, 'overlaps', 1) end
  if outcome == 1 then
    for r = 0, ranges - 1 do
      redis.call('HSET', wm_key, ARGV[i + 2 + 4 * r], ARGV[i + 4 + 4 * r])
    end
    redis.call('HINCRBY', stats_key, 'applied', ranges)
    apply_block(i + 2 + 4 * ranges)
  end
  i = i + span
end
return results
