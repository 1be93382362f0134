-- Folds groups of summaries into the live state, each exactly once (fold.py holds the same
-- semantics in Python, README.md the keys). ARGV[1] is the call (records.FoldCall), ARGV[2..] one
-- group each (records.group_record); records.py declares every field read here by name.
-- A group is one or more summaries' offset ranges and ONE block of partials (merged by the caller
-- when there are several): it is applied only when every range continues its partition's
-- watermark, checked in order. Redis runs a script atomically: a group's fold and its watermarks
-- move together or not at all. Returns one outcome per group: 1 applied, 0 duplicate (every range
-- already folded), -1 wait (a predecessor is missing), -2 overlap (breaks the chaining contract;
-- for a merged group, any other mix: the caller then folds its summaries one by one).
-- Keys are derived from the prefix inside the script: fine on one Redis node; on Redis Cluster
-- the prefix must be a hash tag such as {smartgrid} so every key lands in one slot.
local args = record(ARGV[1], 'fold_call')
local P = args.prefix
local live_ttl, region_ttl, late_ttl = args.live_ttl, args.region_ttl, args.late_ttl
-- Newest event second that may be folded: the wall clock plus the allowed clock skew. A second
-- beyond it (a meter clock far ahead that ingest did not refuse) is counted and dropped, so the
-- newest second, and with it the dashboard's "now", never runs ahead of the wall clock.
local horizon = args.horizon
-- Every group decoded and checked before anything is written.
local groups = {}
for k = 2, #ARGV do groups[k - 1] = record(ARGV[k], 'group') end

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
  if held and first_seen then redis.call('HINCRBY', stats_key, 'meters_new_again', 1) end
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

-- Outcome of a group's ranges against the watermarks, each range checked against the one before
-- it in the group. With no watermark yet only a chain's first summary (not chained) applies; a
-- chained one waits.
local function classify(ranges)
  local n = rows(ranges)
  local seen = {}
  local applied, duplicates, waits = 0, 0, 0
  for r = 1, n do
    local source = ranges.source[r]
    local first, last = tonumber(ranges.first_offset[r]), tonumber(ranges.last_offset[r])
    local wm = seen[source]
    if wm == nil then
      wm = redis.call('HGET', wm_key, source)
      wm = wm and tonumber(wm) or false
    end
    local chained = ranges.chained[r]
    if (wm and first == wm + 1) or (not wm and not chained) then
      applied = applied + 1
      seen[source] = last
    elseif not wm or first > wm + 1 then
      waits = waits + 1
    elseif last <= wm then
      duplicates = duplicates + 1
    else
      return -2
    end
  end
  if applied == n then return 1 end
  if duplicates == n then return 0 end
  if waits > 0 and duplicates == 0 then return -1 end
  return -2
end

-- Apply one group's block of partials.
local function apply_block(group)
  -- Seconds: older than the newest minus the retention are gone from the live view.
  local newest = latest
  local sec = group.seconds
  for j = 1, rows(sec) do
    local second = tonumber(sec.second[j])
    if second > horizon then
      redis.call('HINCRBY', stats_key, 'future_seconds', 1)
    elseif second < latest - live_ttl then
      redis.call('HINCRBY', stats_key, 'too_late_seconds', 1)
    else
      if second > newest then newest = second end
      local key = P .. ':sec:' .. sec.second[j]
      redis.call('HINCRBYFLOAT', key, 'sum', sec.sum_kwh[j])
      redis.call('HINCRBY', key, 'count', sec.count[j])
      fold_extremes(key, 'min', sec.min_kwh[j], 'max', sec.max_kwh[j])
      redis.call('EXPIRE', key, live_ttl)
      redis.call('SADD', dirty_key, sec.second[j])
    end
  end
  local mins = group.minutes
  for j = 1, rows(mins) do
    local minute = tonumber(mins.minute[j])
    if minute >= latest - live_ttl - 60 and minute <= horizon then
      local key = P .. ':min:' .. mins.minute[j]
      redis.call('HINCRBYFLOAT', key, 'sum', mins.sum_kwh[j])
      redis.call('HINCRBY', key, 'count', mins.count[j])
      fold_extremes(key, 'min', mins.min_kwh[j], 'max', mins.max_kwh[j])
      redis.call('EXPIRE', key, live_ttl + 120)
    end
  end
  local reg = group.regions
  for j = 1, rows(reg) do
    local second, region = reg.second[j], reg.region[j]
    local new_meters = tonumber(reg.new_meters[j])
    local meter_ids = reg.meter_ids[j]
    if tonumber(second) > horizon then
      redis.call('HINCRBY', stats_key, 'future_regions', 1)
    elseif tonumber(second) < latest - region_ttl then
      redis.call('HINCRBY', stats_key, 'too_late_regions', 1)
    else
      local key = P .. ':rsec:' .. second
      redis.call('HINCRBYFLOAT', key, 'sum:' .. region, reg.sum_kwh[j])
      redis.call('HINCRBY', key, 'cnt:' .. region, reg.count[j])
      fold_extremes(key, nil, nil, 'max:' .. region, reg.max_kwh[j])
      if tonumber(reg.geo_count[j]) > 0 then
        local lat_sum, lon_sum, geo_count = reg.lat_sum[j], reg.lon_sum[j], reg.geo_count[j]
        redis.call('HINCRBYFLOAT', key, 'lat:' .. region, lat_sum)
        redis.call('HINCRBYFLOAT', key, 'lon:' .. region, lon_sum)
        redis.call('HINCRBY', key, 'geo:' .. region, geo_count)
        redis.call('HINCRBYFLOAT', geo_key, 'lat:' .. region, lat_sum)
        redis.call('HINCRBYFLOAT', geo_key, 'lon:' .. region, lon_sum)
        redis.call('HINCRBY', geo_key, 'n:' .. region, geo_count)
      end
      -- Version 2 summaries: meters new to the bucket, counted by ingest (one partition per
      -- meter), so distinct meters cost one HINCRBY per bucket, not a set insert per reading.
      if new_meters > 0 then
        redis.call('HINCRBY', key, 'mc:' .. region, new_meters)
      end
      -- Version 1 summaries (an ingest not yet upgraded): the bucket's meter ids, deduplicated
      -- in a set kept for the late window.
      if #meter_ids > 0 then
        local set_key = P .. ':rmet:' .. second .. ':' .. region
        for start = 1, #meter_ids, 1000 do
          redis.call('SADD', set_key, unpack(meter_ids, start, math.min(start + 999, #meter_ids)))
        end
        redis.call('EXPIRE', set_key, late_ttl)
        -- After the late window the set is gone: keep the larger count (a lower bound).
        local distinct = redis.call('SCARD', set_key)
        local stored = tonumber(redis.call('HGET', key, 'mc:' .. region) or '0')
        if distinct > stored then redis.call('HSET', key, 'mc:' .. region, distinct) end
      end
      redis.call('EXPIRE', key, region_ttl)
      redis.call('SADD', dirty_key, second)
    end
  end
  local upd = group.meters
  for j = 1, rows(upd) do
    fold_meter(upd.meter_id[j], upd.region[j], upd.status[j], upd.at_ms[j], upd.last_reading_ms[j],
      upd.first_seen[j])
  end
  if newest > latest then
    latest = newest
    redis.call('SET', P .. ':agg:latest', newest)
  end
end

local results = {}
for k, group in ipairs(groups) do
  local ranges = group.ranges
  local outcome, n = classify(ranges), rows(ranges)
  results[k] = outcome
  -- A merged group that is not applied changes nothing: its summaries are folded (and
  -- counted) one by one next.
  if outcome == 0 and n == 1 then redis.call('HINCRBY', stats_key, 'duplicates', 1) end
  if outcome == -2 and n == 1 then redis.call('HINCRBY', stats_key, 'overlaps', 1) end
  if outcome == 1 then
    for r = 1, n do
      redis.call('HSET', wm_key, ranges.source[r], ranges.last_offset[r])
    end
    redis.call('HINCRBY', stats_key, 'applied', n)
    apply_block(group)
  end
end
return results
