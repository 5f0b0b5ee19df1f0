//! Counting geometry: directed line crossings and point-in-polygon zones. Pure functions.

/// A point in image coordinates (pixels).
pub type Point = [f64; 2];

/// Which way a path crossed a directed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Crossing {
    /// From the line's left to its right, looking from `from` to `to`.
    In,
    /// From its right to its left.
    Out,
}

fn cross(o: Point, a: Point, b: Point) -> f64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Whether the step `prev -> next` crosses the segment `from -> to`, and in which direction.
/// Touching the line without passing it is no crossing; a step that ends exactly on the line
/// is counted when a later step leaves it on the other side (the caller passes the last point
/// that was strictly off the line as `prev`: that is the hysteresis that stops jitter on the
/// line from counting twice).
pub fn crossing(from: Point, to: Point, prev: Point, next: Point) -> Option<Crossing> {
    let side_prev = cross(from, to, prev);
    let side_next = cross(from, to, next);
    if side_prev == 0.0 || side_next == 0.0 || (side_prev > 0.0) == (side_next > 0.0) {
        return None;
    }
    // The step's end points are on opposite sides of the line; check that the line's end
    // points are on opposite sides of the step, i.e. the step passes within the segment.
    let a = cross(prev, next, from);
    let b = cross(prev, next, to);
    if (a > 0.0 && b > 0.0) || (a < 0.0 && b < 0.0) {
        return None;
    }
    // In image coordinates (y down), a positive cross product means "to the right".
    Some(if side_prev < 0.0 { Crossing::In } else { Crossing::Out })
}

/// Which side of the directed line `from -> to` a point is on: `Some(true)` left, `Some(false)`
/// right, `None` exactly on it.
pub fn side(from: Point, to: Point, p: Point) -> Option<bool> {
    let c = cross(from, to, p);
    if c == 0.0 {
        None
    } else {
        Some(c < 0.0)
    }
}

/// Whether `p` lies inside `polygon` (even-odd rule; points on an edge may go either way).
pub fn inside(polygon: &[Point], p: Point) -> bool {
    let mut result = false;
    let n = polygon.len();
    let mut j = n.wrapping_sub(1);
    for i in 0..n {
        let (pi, pj) = (polygon[i], polygon[j]);
        if (pi[1] > p[1]) != (pj[1] > p[1]) {
            let x = (pj[0] - pi[0]) * (p[1] - pi[1]) / (pj[1] - pi[1]) + pi[0];
            if p[0] < x {
                result = !result;
            }
        }
        j = i;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const FROM: Point = [0.0, 100.0];
    const TO: Point = [200.0, 100.0];

    #[test]
    fn downward_steps_through_a_left_to_right_line_are_in() {
        // Looking from (0,100) to (200,100) in image coordinates (y down), "left" is up.
        assert_eq!(crossing(FROM, TO, [50.0, 90.0], [50.0, 110.0]), Some(Crossing::In));
        assert_eq!(crossing(FROM, TO, [50.0, 110.0], [50.0, 90.0]), Some(Crossing::Out));
    }

    #[test]
    fn steps_beside_or_along_the_segment_do_not_count() {
        assert_eq!(crossing(FROM, TO, [250.0, 90.0], [250.0, 110.0]), None);
        assert_eq!(crossing(FROM, TO, [50.0, 90.0], [60.0, 95.0]), None);
        assert_eq!(crossing(FROM, TO, [50.0, 90.0], [50.0, 100.0]), None);
    }

    #[test]
    fn polygon_membership() {
        let square = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]];
        assert!(inside(&square, [5.0, 5.0]));
        assert!(!inside(&square, [15.0, 5.0]));
        assert!(!inside(&[], [0.0, 0.0]));
    }
}
