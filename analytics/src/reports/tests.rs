use super::*;

const K: f64 = 2.0;

#[test]
fn venue_occupancy_is_the_running_net_flow_of_each_day() {
    // Day 0: +10, +5, -3 ; day 1 restarts: +4.
    let net = df!(
        "start" => [0i64, 3600, 7200, DAY],
        "net" => [10i64, 5, -3, 4],
        "var" => [1.0f64, 1.0, 1.0, 9.0],
    )
    .expect("frame");
    let frame = venue_occupancy(net, 0, K).expect("report");
    let rows: Vec<OccupancyRow> = frame_rows("occupancy", &frame).expect("rows");
    let values: Vec<f64> = rows.iter().map(|r| r.value).collect();
    assert_eq!(values, vec![10.0, 15.0, 12.0, 4.0]);
    let stds: Vec<f64> = rows.iter().map(|r| r.std).collect();
    assert_eq!(stds, vec![1.0, 2f64.sqrt(), 3f64.sqrt(), 3.0]);
    // 4 < 2 * 3: flagged; the others are not.
    assert_eq!(rows.iter().map(|r| r.flagged).collect::<Vec<_>>(), vec![false, false, false, true]);
    assert!(rows.iter().all(|r| r.zone.is_none() && r.capacity.is_none()));
}

#[test]
fn venue_occupancy_counts_the_morning_before_the_range() {
    let net = df!("start" => [0i64, 3600, 7200], "net" => [10i64, 5, -3], "var" => [0.0f64, 0.0, 0.0]).expect("frame");
    let frame = venue_occupancy(net, 3600, K).expect("report");
    let rows: Vec<OccupancyRow> = frame_rows("occupancy", &frame).expect("rows");
    assert_eq!(rows.iter().map(|r| (r.start, r.value)).collect::<Vec<_>>(), vec![(3600, 15.0), (7200, 12.0)]);
}

#[test]
fn zone_occupancy_is_the_bucket_mean_against_capacity() {
    let levels = df!(
        "start" => [0i64, 0, 3600],
        "zone" => ["a", "b", "a"],
        "sum" => [120i64, 3, 60],
        "var" => [16.0f64, 4.0, 4.0],
        "n" => [2i64, 1, 1],
    )
    .expect("frame");
    let capacities = df!("zone" => ["a", "b"], "capacity" => [100i64, 50]).expect("frame");
    let frame = zone_occupancy(levels, capacities, K).expect("report");
    let rows: Vec<OccupancyRow> = frame_rows("occupancy", &frame).expect("rows");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].zone.as_deref(), Some("a"));
    assert_eq!((rows[0].value, rows[0].std, rows[0].load), (60.0, 2.0, Some(0.6)));
    assert_eq!(rows[1].start, 3600);
    assert_eq!(rows[2].zone.as_deref(), Some("b"));
    // 3 < 2 * 2: flagged.
    assert!(rows[2].flagged);
    assert_eq!(rows[2].capacity, Some(50));
}

#[test]
fn throughput_keeps_both_directions_with_their_noise() {
    let crossings = df!(
        "start" => [60i64, 0],
        "line" => ["north", "north"],
        "entries" => [5i64, 30],
        "entries_var" => [9.0f64, 9.0],
        "exits" => [-1i64, 2],
        "exits_var" => [9.0f64, 0.0],
    )
    .expect("frame");
    let frame = throughput(crossings, K).expect("report");
    let rows: Vec<ThroughputRow> = frame_rows("throughput", &frame).expect("rows");
    assert_eq!(rows[0].start, 0);
    assert_eq!((rows[0].entries, rows[0].entries_std, rows[0].entries_flagged), (30, 3.0, false));
    // 2 is not below 2 * 0.
    assert!(!rows[0].exits_flagged);
    assert!(rows[1].entries_flagged && rows[1].exits_flagged);
}

#[test]
fn flow_shares_ignore_negative_noise() {
    let transitions = df!(
        "from" => ["a", "a", "a", "b"],
        "to" => ["b", "c", "d", "a"],
        "value" => [30i64, 10, -4, 0],
        "var" => [1.0f64, 1.0, 1.0, 1.0],
    )
    .expect("frame");
    let frame = flows(transitions, K).expect("report");
    let rows: Vec<FlowRow> = frame_rows("flows", &frame).expect("rows");
    let shares: Vec<f64> = rows.iter().map(|r| r.share).collect();
    assert_eq!(shares, vec![0.75, 0.25, 0.0, 0.0]);
    // -4 is two standard deviations from zero: not flagged; 0 is.
    assert!(!rows[2].flagged && rows[3].flagged && !rows[0].flagged);
}

#[test]
fn peaks_rank_hours_by_their_mean_over_days() {
    let hourly = df!(
        "start" => [9 * 3600i64, DAY + 9 * 3600, 17 * 3600, DAY + 17 * 3600, 3 * 3600],
        "entries" => [100i64, 200, 50, 70, 1],
        "var" => [2.0f64, 2.0, 2.0, 2.0, 2.0],
    )
    .expect("frame");
    let frame = peaks(hourly, K).expect("report");
    let rows: Vec<PeakRow> = frame_rows("peaks", &frame).expect("rows");
    assert_eq!(rows.iter().map(|r| (r.hour, r.rank)).collect::<Vec<_>>(), vec![(9, 1), (17, 2), (3, 3)]);
    assert_eq!(rows[0].mean_entries, 150.0);
    assert_eq!(rows[0].days, 2);
    assert!((rows[0].std - 1.0).abs() < 1e-12);
    assert!(rows[2].flagged);
}

#[test]
fn dwell_shares_are_per_zone() {
    let dwell_frame = df!(
        "zone" => ["a", "a", "b"],
        "at_least_secs" => [60i64, 0, 0],
        "value" => [30i64, 10, 5],
        "var" => [1.0f64, 1.0, 1.0],
    )
    .expect("frame");
    let frame = dwell(dwell_frame, K).expect("report");
    let rows: Vec<DwellRow> = frame_rows("dwell", &frame).expect("rows");
    assert_eq!(
        rows.iter().map(|r| (r.zone.as_str(), r.at_least_secs, r.share)).collect::<Vec<_>>(),
        vec![("a", 0, 0.25), ("a", 60, 0.75), ("b", 0, 1.0)]
    );
}

#[test]
fn compare_gives_the_change_against_each_earlier_period() {
    let periods = df!(
        "period" => ["current", "previous_day", "previous_week"],
        "from" => [2 * DAY, DAY, -5 * DAY],
        "to" => [3 * DAY, 2 * DAY, -4 * DAY],
        "entries" => [150i64, 100, 0],
        "entries_var" => [4.0f64, 4.0, 4.0],
        "exits" => [140i64, 90, 0],
        "exits_var" => [4.0f64, 4.0, 4.0],
    )
    .expect("frame");
    let frame = compare(periods, K).expect("report");
    let rows: Vec<CompareRow> = frame_rows("compare", &frame).expect("rows");
    assert_eq!(rows[0].entries_change_pct, None);
    assert_eq!(rows[1].entries_change_pct, Some(50.0));
    assert_eq!(rows[2].entries_change_pct, None);
    assert!(rows[2].flagged);
}

#[test]
fn frames_become_csv_with_a_header() {
    let mut frame = df!("start" => [0i64, 60], "value" => [1.5f64, 2.0]).expect("frame");
    let csv = String::from_utf8(frame_to_csv("test", &mut frame).expect("csv")).expect("utf-8");
    assert_eq!(csv, "start,value\n0,1.5\n60,2.0\n");
}

#[test]
fn csv_fields_are_quoted_when_they_must_be_and_nulls_are_empty() {
    let mut frame = df!(
        "zone" => ["hall, east", "say \"hi\"", "plain"],
        "load" => [Some(0.25f64), None, Some(f64::NAN)],
        "flagged" => [true, false, true],
        "n" => [-3i32, 0, 7]
    )
    .expect("frame");
    let csv = String::from_utf8(frame_to_csv("test", &mut frame).expect("csv")).expect("utf-8");
    assert_eq!(
        csv,
        "zone,load,flagged,n\n\"hall, east\",0.25,true,-3\n\"say \"\"hi\"\"\",,false,0\nplain,NaN,true,7\n"
    );
}

#[test]
fn rows_that_do_not_match_the_frame_are_an_error() {
    let frame = df!("start" => [0i64]).expect("frame");
    let error = frame_rows::<FlowRow>("flows", &frame).expect_err("missing columns");
    assert!(error.to_string().contains("row 0"), "{error}");
}

#[test]
fn empty_inputs_give_empty_reports() {
    let net = df!("start" => Vec::<i64>::new(), "net" => Vec::<i64>::new(), "var" => Vec::<f64>::new()).expect("frame");
    let frame = venue_occupancy(net, 0, K).expect("report");
    assert_eq!(frame.height(), 0);
}
