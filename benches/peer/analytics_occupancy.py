"""Peer side of `passage bench analytics`: the venue occupancy report written directly in
DuckDB's and in Polars' Python APIs, over the same data the Rust side queries, timed warm.

The report: per bucket (`(start // bucket) * bucket`), the net flow into the venue (crossings
"in" minus "out" over all lines) and its noise variance, then the running sum of both within
each UTC day (occupancy and its variance), for the buckets starting in [from, to).

Both read what the store reads: the hourly rollup for the whole hours of the range and the raw
1-minute items for the partial hours at either end. DuckDB reads the bench's database file
(read-only); Polars holds the rollup in memory (read once from its Parquet copy) and scans the
raw items' Parquet copy with the range predicates pushed down.
Prints one JSON line: p50/p95 in milliseconds for each, the number of result rows and a
checksum (sum of the occupancy values) that the Rust side compares with its own.

    python benches/peer/analytics_occupancy.py --db FILE --parquet FILE --hourly-parquet FILE \
        --venue bench \
        --from 0 --to 31536000 --bucket 3600 --iterations 20
"""

import argparse
import json
import statistics
import sys
import time

import duckdb
import polars as pl


def percentile(samples, q):
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[index]


def timed(run, iterations, warmup=2):
    result = None
    for _ in range(warmup):
        result = run()
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        result = run()
        samples.append((time.perf_counter() - started) * 1000.0)
    return result, samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--parquet", required=True, help="the raw items")
    parser.add_argument("--hourly-parquet", required=True, help="the hourly rollup")
    parser.add_argument("--venue", required=True)
    parser.add_argument("--from", dest="start", type=int, required=True)
    parser.add_argument("--to", dest="end", type=int, required=True)
    parser.add_argument("--bucket", type=int, default=3600)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="0: the libraries' default (all cores)")
    args = parser.parse_args()
    day_start = args.start - args.start % 86400

    con = duckdb.connect(args.db, read_only=True)
    if args.threads:
        con.execute(f"SET threads = {args.threads}")
    # The store's layout: identifiers are codes of the `names` table (looked up once, as the
    # store keeps them in memory), crossings are metric 1, "in" is other = 0. Whole hours
    # come from the hourly rollup, partial hours at either end from the raw items.
    venue = con.execute("SELECT code FROM names WHERE name = ?", [args.venue]).fetchone()[0]
    hour = 3600
    first = -(-day_start // hour) * hour
    last = args.end // hour * hour
    if args.bucket % hour == 0 and first < last:
        head, tail, hours = (day_start, first), (last, args.end), (first, last)
    else:
        head, tail, hours = (day_start, args.end), (args.end, args.end), (args.end, args.end)
    sql = """
        WITH cells AS (
            SELECT start, other, value, std * std AS var FROM count_items
            WHERE venue = $venue AND metric = 1 AND start >= $head_from AND start < $head_to
            UNION ALL
            SELECT start, other, value, std * std AS var FROM count_items
            WHERE venue = $venue AND metric = 1 AND start >= $tail_from AND start < $tail_to
            UNION ALL
            SELECT hour, other, value, var FROM count_hourly
            WHERE venue = $venue AND metric = 1 AND hour >= $hours_from AND hour < $hours_to
        ),
        net AS (
            SELECT (start // $bucket) * $bucket AS b,
                   SUM(CASE WHEN other = 0 THEN value ELSE -value END) AS net,
                   SUM(var) AS var
            FROM cells
            GROUP BY b
        )
        SELECT b,
               SUM(net) OVER (PARTITION BY b // 86400 ORDER BY b) AS value,
               SQRT(SUM(var) OVER (PARTITION BY b // 86400 ORDER BY b)) AS std
        FROM net
        QUALIFY b >= $from_bucket
        ORDER BY b
    """
    params = {
        "bucket": args.bucket,
        "venue": venue,
        "head_from": head[0],
        "head_to": head[1],
        "tail_from": tail[0],
        "tail_to": tail[1],
        "hours_from": hours[0],
        "hours_to": hours[1],
        "from_bucket": args.start - args.start % args.bucket,
    }
    duck_rows, duck_ms = timed(lambda: con.execute(sql, params).fetchall(), args.iterations)

    # Polars: the rollup in memory (read once); the raw items scanned from their Parquet copy
    # with the range predicates pushed down (row groups outside them are skipped).
    hourly = pl.read_parquet(args.hourly_parquet, columns=["venue", "metric", "other", "hour", "value", "var"])

    def polars_query():
        raw = (
            pl.scan_parquet(args.parquet)
            .select("venue", "metric", "other", "start", "value", "std")
            .filter(
                (pl.col("venue") == venue)
                & (pl.col("metric") == 1)
                & (
                    ((pl.col("start") >= head[0]) & (pl.col("start") < head[1]))
                    | ((pl.col("start") >= tail[0]) & (pl.col("start") < tail[1]))
                )
            )
            .select("start", "other", "value", (pl.col("std") * pl.col("std")).alias("var"))
        )
        rolled = (
            hourly.lazy()
            .filter(
                (pl.col("venue") == venue)
                & (pl.col("metric") == 1)
                & (pl.col("hour") >= hours[0])
                & (pl.col("hour") < hours[1])
            )
            .select(pl.col("hour").alias("start"), "other", "value", "var")
        )
        return (
            pl.concat([raw, rolled])
            .group_by(((pl.col("start") // args.bucket) * args.bucket).alias("b"))
            .agg(
                pl.when(pl.col("other") == 0).then(pl.col("value")).otherwise(-pl.col("value")).sum().alias("net"),
                pl.col("var").sum().alias("var"),
            )
            .sort("b")
            .with_columns((pl.col("b") // 86400).alias("day"))
            .with_columns(
                pl.col("net").cum_sum().over("day").alias("value"),
                pl.col("var").cum_sum().over("day").sqrt().alias("std"),
            )
            .filter(pl.col("b") >= params["from_bucket"])
            .select("b", "value", "std")
            .collect()
        )

    polars_rows, polars_ms = timed(polars_query, args.iterations)

    duck_checksum = float(sum(row[1] for row in duck_rows))
    polars_checksum = float(polars_rows["value"].sum())
    print(
        json.dumps(
            {
                "duckdb_version": duckdb.__version__,
                "polars_version": pl.__version__,
                "duckdb_p50_ms": statistics.median(duck_ms),
                "duckdb_p95_ms": percentile(duck_ms, 0.95),
                "polars_p50_ms": statistics.median(polars_ms),
                "polars_p95_ms": percentile(polars_ms, 0.95),
                "rows": len(duck_rows),
                "polars_rows": polars_rows.height,
                "checksum": duck_checksum,
                "polars_checksum": polars_checksum,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
