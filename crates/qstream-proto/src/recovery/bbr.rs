//! BBR congestion control, version 3 (draft-ietf-ccwg-bbr, the editor's copy of 2026-08).
//!
//! BBR builds a model of the path from delivery-rate samples (§4.1: how fast acknowledged data
//! was delivered) and the minimum RTT, and paces at the estimated bandwidth with a window of
//! about twice the bandwidth-delay product. Loss moves the model only when it exceeds
//! [`LOSS_THRESH`] of what was in flight while probing (§5.5.10), so random loss below that is
//! not taken for congestion, unlike in NewReno and CUBIC.
//!
//! Section numbers in comments are those of the draft's "Detailed Algorithm" (§5) and "Input
//! Signals" (§4); names follow its pseudocode.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Controller, PacketInfo, RttEstimator, initial_window, minimum_window};

/// §2.7: Startup's pacing gain, 4 ln 2, the least that doubles the rate each round.
const STARTUP_PACING_GAIN: f64 = 2.77;
/// §2.7: Drain's pacing gain.
const DRAIN_PACING_GAIN: f64 = 0.5;
/// §2.8: the cwnd gain of most states.
const DEFAULT_CWND_GAIN: f64 = 2.0;
/// §5.3.3.4: ProbeBW_UP's gains.
const PROBE_UP_PACING_GAIN: f64 = 1.25;
const PROBE_UP_CWND_GAIN: f64 = 2.25;
/// §5.3.3.1: ProbeBW_DOWN's pacing gain.
const PROBE_DOWN_PACING_GAIN: f64 = 0.9;
/// §2.7: the pacing rate is 1 % below the bandwidth estimate.
const PACING_MARGIN: f64 = 0.01;
/// §2.10: the most loss tolerated per round trip while probing.
const LOSS_THRESH: f64 = 0.02;
/// §2.10: the multiplicative decrease per lossy round.
const BETA: f64 = 0.7;
/// §2.10: headroom left for other flows below inflight_longterm.
const HEADROOM: f64 = 0.15;
/// §2.10: the least window, in datagrams, for pipelining with delayed ACKs.
const MIN_PIPE_CWND_PACKETS: u64 = 4;
/// §2.15: ProbeRTT's cwnd gain, duration, and the interval between ProbeRTTs.
const PROBE_RTT_CWND_GAIN: f64 = 0.5;
const PROBE_RTT_DURATION: Duration = Duration::from_millis(200);
const PROBE_RTT_INTERVAL: Duration = Duration::from_secs(5);
/// §2.15: the min_rtt filter's window.
const MIN_RTT_FILTER_LEN: Duration = Duration::from_secs(10);
/// §2.13: the extra_acked filter's window, in round trips.
const EXTRA_ACKED_FILTER_LEN: u64 = 10;
/// §5.3.1.1: rounds without 25 % growth before the pipe counts as full.
const FULL_BW_COUNT: u32 = 3;
const FULL_BW_GROWTH: f64 = 1.25;
/// §5.3.1.2: discontiguous lost ranges in a round for Startup to end on loss.
const STARTUP_FULL_LOSS_COUNT: u32 = 6;

/// The states of §5.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Startup,
    Drain,
    ProbeBwDown,
    ProbeBwCruise,
    ProbeBwRefill,
    ProbeBwUp,
    ProbeRtt,
}

impl State {
    fn is_probe_bw(self) -> bool {
        matches!(
            self,
            Self::ProbeBwDown | Self::ProbeBwCruise | Self::ProbeBwRefill | Self::ProbeBwUp
        )
    }

    /// §5.3.3.6 IsProbingBW.
    fn is_probing_bw(self) -> bool {
        matches!(self, Self::Startup | Self::ProbeBwRefill | Self::ProbeBwUp)
    }
}

/// §2.12: what the ACKs currently tell about bandwidth probing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AckPhase {
    Init,
    Refilling,
    ProbeStarting,
    ProbeFeedback,
    ProbeStopping,
}

/// What §4.1.2.2 keeps per packet sent.
#[derive(Clone, Copy, Debug)]
struct SentState {
    delivered: u64,
    delivered_time: Instant,
    first_send_time: Instant,
    send_time: Instant,
    tx_in_flight: u64,
    lost: u64,
    is_app_limited: bool,
}

/// The per-ACK rate sample (§2.3, §4.1.2.3).
#[derive(Clone, Copy, Debug, Default)]
struct RateSample {
    /// Bytes per second; 0 without a sample.
    delivery_rate: f64,
    is_app_limited: bool,
    delivered: u64,
    prior_delivered: u64,
    prior_time: Option<Instant>,
    send_elapsed: Duration,
    ack_elapsed: Duration,
    last_packet: Option<u64>,
    newly_acked: u64,
    newly_lost: u64,
    tx_in_flight: u64,
    lost: u64,
    rtt: Option<Duration>,
}

/// A windowed maximum over samples stamped with a time that only grows (round trips, probe
/// cycles): the best three as in Linux's minmax, so that the maximum of the window is known
/// after older ones expire.
#[derive(Clone, Copy, Debug, Default)]
struct MaxFilter {
    samples: [(u64, f64); 3],
}

impl MaxFilter {
    fn reset(&mut self, time: u64, value: f64) {
        self.samples = [(time, value); 3];
    }

    fn update(&mut self, time: u64, value: f64, window: u64) -> f64 {
        let s = &mut self.samples;
        if value >= s[0].1 || time.saturating_sub(s[2].0) > window {
            self.reset(time, value);
            return value;
        }
        if value >= s[1].1 {
            s[1] = (time, value);
            s[2] = (time, value);
        } else if value >= s[2].1 {
            s[2] = (time, value);
        }
        // Expire the best samples that fell out of the window.
        if time.saturating_sub(s[0].0) > window {
            s[0] = s[1];
            s[1] = s[2];
            s[2] = (time, value);
            if time.saturating_sub(s[0].0) > window {
                s[0] = s[1];
                s[1] = s[2];
            }
        } else if s[1].0 == s[0].0 && time.saturating_sub(s[1].0) > window / 4 {
            s[1] = (time, value);
            s[2] = (time, value);
        } else if s[2].0 == s[1].0 && time.saturating_sub(s[2].0) > window / 2 {
            s[2] = (time, value);
        }
        s[0].1
    }
}

/// BBRv3. See the module documentation.
#[derive(Debug)]
pub(super) struct Bbr {
    smss: u64,
    initial_cwnd: u64,
    cwnd: u64,
    pacing_rate: f64,

    // Delivery rate sampling, connection state (§4.1.2.1).
    delivered: u64,
    delivered_time: Option<Instant>,
    first_send_time: Option<Instant>,
    /// C.app_limited: the delivered count that ends the application-limited bubble; 0 when
    /// not application-limited.
    app_limited: u64,
    lost: u64,
    /// Per packet, from the oldest outstanding application data packet number.
    sent: VecDeque<Option<SentState>>,
    first_number: u64,
    rs: RateSample,

    state: State,
    pacing_gain: f64,
    cwnd_gain: f64,
    round_count: u64,
    round_start: bool,
    next_round_delivered: u64,
    idle_restart: bool,
    drain_start_round: u64,
    is_cwnd_limited: bool,
    cwnd_limited_in_round: bool,

    max_bw_filter: MaxFilter,
    cycle_count: u64,
    max_bw: f64,
    bw_shortterm: f64,
    bw: f64,
    min_rtt: Option<Duration>,
    min_rtt_stamp: Instant,
    extra_acked: f64,
    extra_acked_filter: MaxFilter,
    extra_acked_interval_start: Instant,
    extra_acked_delivered: u64,
    inflight_longterm: f64,
    inflight_shortterm: f64,
    bw_latest: f64,
    inflight_latest: f64,
    loss_round_delivered: u64,
    loss_round_start: bool,
    is_loss_in_round: bool,

    full_bw_reached: bool,
    full_bw_now: bool,
    full_bw: f64,
    full_bw_count: u32,

    ack_phase: AckPhase,
    is_bw_probe_sample: bool,
    bw_probe_up_acked: u64,
    probe_up_acked_per_inc: f64,
    bw_probe_up_rounds: u32,
    rounds_since_probe_up: u64,
    bw_probe_wait: Duration,
    cycle_stamp: Instant,
    prev_probe_too_high: bool,
    prev_probe_precautionary: bool,

    probe_rtt_min_delay: Option<Duration>,
    probe_rtt_min_stamp: Instant,
    probe_rtt_expired: bool,
    probe_rtt_done_stamp: Option<Instant>,
    probe_rtt_round_done: bool,
    prior_cwnd: u64,

    /// Loss recovery (RFC 9002 §7.3.2): from the congestion event until a packet sent after
    /// it is acknowledged.
    recovery_start: Option<Instant>,
    /// Startup's loss exit (§5.3.1.2): losses in the current round, as discontiguous ranges,
    /// and the counts at the round's start.
    lost_ranges_in_round: u32,
    last_lost_number: Option<u64>,
    round_start_lost: u64,
    round_start_delivered: u64,

    rng: StdRng,
}

impl Bbr {
    /// OnInit (§5.2.1), with `seed` for the randomised probe timing.
    pub(super) fn new(max_datagram_size: u64, now: Instant, seed: u64) -> Self {
        let initial = initial_window(max_datagram_size);
        let mut bbr = Self {
            smss: max_datagram_size,
            initial_cwnd: initial,
            cwnd: initial,
            pacing_rate: 0.0,
            delivered: 0,
            delivered_time: None,
            first_send_time: None,
            app_limited: 0,
            lost: 0,
            sent: VecDeque::new(),
            first_number: 0,
            rs: RateSample::default(),
            state: State::Startup,
            pacing_gain: STARTUP_PACING_GAIN,
            cwnd_gain: DEFAULT_CWND_GAIN,
            round_count: 0,
            round_start: false,
            next_round_delivered: 0,
            idle_restart: false,
            drain_start_round: 0,
            is_cwnd_limited: false,
            cwnd_limited_in_round: false,
            max_bw_filter: MaxFilter::default(),
            cycle_count: 0,
            max_bw: 0.0,
            bw_shortterm: f64::INFINITY,
            bw: 0.0,
            min_rtt: None,
            min_rtt_stamp: now,
            extra_acked: 0.0,
            extra_acked_filter: MaxFilter::default(),
            extra_acked_interval_start: now,
            extra_acked_delivered: 0,
            inflight_longterm: f64::INFINITY,
            inflight_shortterm: f64::INFINITY,
            bw_latest: 0.0,
            inflight_latest: 0.0,
            loss_round_delivered: 0,
            loss_round_start: false,
            is_loss_in_round: false,
            full_bw_reached: false,
            full_bw_now: false,
            full_bw: 0.0,
            full_bw_count: 0,
            ack_phase: AckPhase::Init,
            is_bw_probe_sample: false,
            bw_probe_up_acked: 0,
            probe_up_acked_per_inc: f64::INFINITY,
            bw_probe_up_rounds: 0,
            rounds_since_probe_up: 0,
            bw_probe_wait: Duration::ZERO,
            cycle_stamp: now,
            prev_probe_too_high: false,
            prev_probe_precautionary: false,
            probe_rtt_min_delay: None,
            probe_rtt_min_stamp: now,
            probe_rtt_expired: false,
            probe_rtt_done_stamp: None,
            probe_rtt_round_done: false,
            prior_cwnd: 0,
            recovery_start: None,
            lost_ranges_in_round: 0,
            last_lost_number: None,
            round_start_lost: 0,
            round_start_delivered: 0,
            rng: StdRng::seed_from_u64(seed),
        };
        // InitPacingRate: the initial window over 1 ms (no RTT yet), times Startup's gain.
        bbr.pacing_rate = STARTUP_PACING_GAIN * initial as f64 / 1e-3;
        bbr
    }

    fn min_pipe_cwnd(&self) -> u64 {
        MIN_PIPE_CWND_PACKETS * self.smss
    }

    fn packet_state(&mut self, number: u64) -> Option<SentState> {
        let index = usize::try_from(number.checked_sub(self.first_number)?).ok()?;
        let state = self.sent.get_mut(index)?.take();
        while matches!(self.sent.front(), Some(None)) {
            self.sent.pop_front();
            self.first_number += 1;
        }
        state
    }

    // --- Rate samples (§4.1.2) ---

    /// UpdateRateSample for an acknowledged packet's state.
    fn update_rate_sample(&mut self, now: Instant, number: u64, p: &SentState) {
        self.delivered_time = Some(now);
        let newest = self.rs.prior_time.is_none()
            || self.first_send_time.is_none_or(|first| p.send_time > first)
            || (Some(p.send_time) == self.first_send_time
                && self.rs.last_packet.is_none_or(|last| number > last));
        if newest {
            self.rs.prior_delivered = p.delivered;
            self.rs.prior_time = Some(p.delivered_time);
            self.rs.is_app_limited = p.is_app_limited;
            self.rs.send_elapsed = p.send_time.saturating_duration_since(p.first_send_time);
            self.rs.ack_elapsed = now.saturating_duration_since(p.delivered_time);
            self.rs.last_packet = Some(number);
            self.rs.tx_in_flight = p.tx_in_flight;
            self.rs.lost = self.lost.saturating_sub(p.lost);
            self.first_send_time = Some(p.send_time);
        }
    }

    /// GenerateRateSample.
    fn generate_rate_sample(&mut self) {
        if self.app_limited != 0 && self.delivered > self.app_limited {
            self.app_limited = 0;
        }
        if self.rs.prior_time.is_none() {
            return;
        }
        let interval = self.rs.send_elapsed.max(self.rs.ack_elapsed);
        self.rs.delivered = self.delivered - self.rs.prior_delivered;
        if self.min_rtt.is_some_and(|min| interval < min) || interval.is_zero() {
            return;
        }
        self.rs.delivery_rate = self.rs.delivered as f64 / interval.as_secs_f64();
    }

    // --- Model and state (§5.2.3) ---

    fn bdp_multiple(&self, gain: f64) -> f64 {
        match self.min_rtt {
            None => self.initial_cwnd as f64,
            Some(min_rtt) => gain * self.bw * min_rtt.as_secs_f64(),
        }
    }

    fn bdp(&self) -> f64 {
        self.bdp_multiple(1.0)
    }

    /// QuantizationBudget (§5.6.4.2), with the offload budget of QUIC (§5.5.6): one send
    /// quantum.
    fn quantization_budget(&self, inflight_cap: f64) -> f64 {
        let send_quantum = (self.pacing_rate * 1e-3).clamp(2.0 * self.smss as f64, 65536.0);
        let mut cap = inflight_cap
            .max(send_quantum)
            .max(self.min_pipe_cwnd() as f64);
        if self.state == State::ProbeBwUp {
            cap += 2.0 * self.smss as f64;
        }
        cap
    }

    /// Inflight(gain).
    fn inflight(&self, gain: f64) -> f64 {
        self.quantization_budget(self.bdp_multiple(gain))
    }

    fn inflight_with_headroom(&self) -> f64 {
        if self.inflight_longterm.is_infinite() {
            return f64::INFINITY;
        }
        let headroom = (self.smss as f64).max(HEADROOM * self.inflight_longterm);
        (self.inflight_longterm - headroom).max(self.min_pipe_cwnd() as f64)
    }

    fn target_inflight(&self) -> f64 {
        self.bdp().min(self.cwnd as f64)
    }

    fn start_round(&mut self) {
        self.next_round_delivered = self.delivered;
    }

    /// UpdateRound (§5.5.1).
    fn update_round(&mut self) {
        if self.rs.prior_time.is_some() && self.rs.prior_delivered >= self.next_round_delivered {
            self.start_round();
            self.round_count += 1;
            self.rounds_since_probe_up += 1;
            self.round_start = true;
            self.is_cwnd_limited = self.cwnd_limited_in_round;
            self.cwnd_limited_in_round = false;
            self.lost_ranges_in_round = 0;
            self.round_start_lost = self.lost;
            self.round_start_delivered = self.delivered;
        } else {
            self.round_start = false;
        }
    }

    /// UpdateMaxBw (§5.5.2).
    fn update_max_bw(&mut self) {
        self.update_round();
        let rate = self.rs.delivery_rate;
        if rate > 0.0 && (rate >= self.max_bw || !self.rs.is_app_limited) {
            self.max_bw = self.max_bw_filter.update(self.cycle_count, rate, 1);
        }
    }

    fn update_latest_delivery_signals(&mut self) {
        self.loss_round_start = false;
        self.bw_latest = self.bw_latest.max(self.rs.delivery_rate);
        self.inflight_latest = self.inflight_latest.max(self.rs.delivered as f64);
        if self.rs.prior_time.is_some() && self.rs.prior_delivered >= self.loss_round_delivered {
            self.loss_round_delivered = self.delivered;
            self.loss_round_start = true;
        }
    }

    fn advance_latest_delivery_signals(&mut self) {
        if self.loss_round_start {
            self.bw_latest = self.rs.delivery_rate;
            self.inflight_latest = self.rs.delivered as f64;
        }
    }

    fn reset_congestion_signals(&mut self) {
        self.is_loss_in_round = false;
        self.bw_latest = 0.0;
        self.inflight_latest = 0.0;
    }

    fn reset_short_term_model(&mut self) {
        self.bw_shortterm = f64::INFINITY;
        self.inflight_shortterm = f64::INFINITY;
    }

    /// UpdateCongestionSignals and AdaptLowerBoundsFromCongestion (§5.5.10.3).
    fn update_congestion_signals(&mut self) {
        self.update_max_bw();
        if !self.loss_round_start {
            return;
        }
        if !self.state.is_probing_bw() && self.is_loss_in_round {
            if self.bw_shortterm.is_infinite() {
                self.bw_shortterm = self.max_bw;
            }
            if self.inflight_shortterm.is_infinite() {
                self.inflight_shortterm = self.cwnd as f64;
            }
            self.bw_shortterm = self.bw_latest.max(BETA * self.bw_shortterm);
            self.inflight_shortterm = self.inflight_latest.max(BETA * self.inflight_shortterm);
        }
        self.is_loss_in_round = false;
    }

    /// UpdateACKAggregation (§5.5.9).
    fn update_ack_aggregation(&mut self, now: Instant) {
        let interval = now
            .saturating_duration_since(self.extra_acked_interval_start)
            .as_secs_f64();
        let mut expected = self.bw * interval;
        if self.extra_acked_delivered as f64 <= expected {
            self.extra_acked_delivered = 0;
            self.extra_acked_interval_start = now;
            expected = 0.0;
        }
        self.extra_acked_delivered += self.rs.newly_acked;
        let extra = (self.extra_acked_delivered as f64 - expected).min(self.cwnd as f64);
        let window = if self.full_bw_reached {
            EXTRA_ACKED_FILTER_LEN
        } else {
            1
        };
        self.extra_acked = self
            .extra_acked_filter
            .update(self.round_count, extra, window);
    }

    fn reset_full_bw(&mut self) {
        self.full_bw = 0.0;
        self.full_bw_count = 0;
        self.full_bw_now = false;
    }

    /// CheckFullBWReached (§5.3.1.1).
    fn check_full_bw_reached(&mut self) {
        if self.full_bw_now || !self.round_start || self.rs.is_app_limited {
            return;
        }
        if self.rs.delivery_rate >= self.full_bw * FULL_BW_GROWTH {
            self.reset_full_bw();
            self.full_bw = self.rs.delivery_rate;
            return;
        }
        self.full_bw_count += 1;
        self.full_bw_now = self.full_bw_count >= FULL_BW_COUNT;
        if self.full_bw_now {
            self.full_bw_reached = true;
        }
    }

    /// CheckStartupDone with CheckStartupHighLoss (§5.3.1.2): in recovery for a round, more
    /// than LOSS_THRESH of the round lost, in at least six ranges.
    fn check_startup_done(&mut self, now: Instant) {
        if self.state == State::Startup && !self.full_bw_reached && self.round_start {
            let lost = self.lost - self.round_start_lost;
            let delivered = self.delivered - self.round_start_delivered;
            let recovering_a_round = self.recovery_start.is_some_and(|start| {
                now.saturating_duration_since(start) >= self.min_rtt.unwrap_or_default()
            });
            if recovering_a_round
                && lost as f64 > LOSS_THRESH * (lost + delivered) as f64
                && self.lost_ranges_in_round >= STARTUP_FULL_LOSS_COUNT
            {
                self.full_bw_reached = true;
                self.inflight_longterm = self.bdp().max(self.inflight_latest);
            }
        }
        if self.state == State::Startup && self.full_bw_reached {
            self.enter_drain();
        }
    }

    fn enter_startup(&mut self) {
        self.state = State::Startup;
        self.pacing_gain = STARTUP_PACING_GAIN;
        self.cwnd_gain = DEFAULT_CWND_GAIN;
    }

    fn enter_drain(&mut self) {
        self.state = State::Drain;
        self.pacing_gain = DRAIN_PACING_GAIN;
        self.cwnd_gain = DEFAULT_CWND_GAIN;
        self.drain_start_round = self.round_count;
    }

    /// CheckDrainDone (§5.3.2).
    fn check_drain_done(&mut self, now: Instant, in_flight: u64) {
        if self.state == State::Drain
            && (in_flight as f64 <= self.inflight(1.0)
                || self.round_count > self.drain_start_round + 3)
        {
            self.enter_probe_bw(now);
        }
    }

    fn enter_probe_bw(&mut self, now: Instant) {
        self.cwnd_gain = DEFAULT_CWND_GAIN;
        self.start_probe_bw_down(now);
    }

    fn start_probe_bw_down(&mut self, now: Instant) {
        self.reset_congestion_signals();
        self.probe_up_acked_per_inc = f64::INFINITY;
        // PickProbeWait: a random 0 or 1 rounds, and 2 to 3 s of wall clock.
        self.rounds_since_probe_up = self.rng.random_range(0..=1);
        self.bw_probe_wait = Duration::from_secs_f64(2.0 + self.rng.random::<f64>());
        self.cycle_stamp = now;
        self.ack_phase = AckPhase::ProbeStopping;
        self.start_round();
        self.state = State::ProbeBwDown;
        self.pacing_gain = PROBE_DOWN_PACING_GAIN;
        self.cwnd_gain = DEFAULT_CWND_GAIN;
    }

    fn start_probe_bw_cruise(&mut self) {
        self.state = State::ProbeBwCruise;
        self.pacing_gain = 1.0;
        self.cwnd_gain = DEFAULT_CWND_GAIN;
    }

    fn start_probe_bw_refill(&mut self) {
        self.reset_short_term_model();
        self.bw_probe_up_rounds = 0;
        self.bw_probe_up_acked = 0;
        self.prev_probe_precautionary = false;
        self.ack_phase = AckPhase::Refilling;
        self.start_round();
        self.state = State::ProbeBwRefill;
        self.pacing_gain = 1.0;
        self.cwnd_gain = DEFAULT_CWND_GAIN;
    }

    fn start_probe_bw_up(&mut self) {
        self.ack_phase = AckPhase::ProbeStarting;
        self.start_round();
        self.reset_full_bw();
        self.full_bw = self.rs.delivery_rate;
        self.state = State::ProbeBwUp;
        self.pacing_gain = PROBE_UP_PACING_GAIN;
        self.cwnd_gain = PROBE_UP_CWND_GAIN;
        self.raise_inflight_longterm_slope();
    }

    fn raise_inflight_longterm_slope(&mut self) {
        let growth = f64::from(1u32 << self.bw_probe_up_rounds);
        self.bw_probe_up_rounds = (self.bw_probe_up_rounds + 1).min(30);
        self.probe_up_acked_per_inc = (self.cwnd as f64 / growth).max(self.smss as f64);
    }

    fn probe_inflight_longterm_upward(&mut self) {
        if !self.is_cwnd_limited || (self.cwnd as f64) < self.inflight_longterm {
            return;
        }
        self.bw_probe_up_acked += self.rs.newly_acked;
        if self.bw_probe_up_acked as f64 >= self.probe_up_acked_per_inc {
            let delta = (self.bw_probe_up_acked as f64 / self.probe_up_acked_per_inc).floor();
            self.bw_probe_up_acked -= (delta * self.probe_up_acked_per_inc) as u64;
            self.inflight_longterm += delta * self.smss as f64;
        }
        if self.round_start {
            self.raise_inflight_longterm_slope();
        }
    }

    /// IsInflightTooHigh (§5.5.10.2); QUIC has selective ACKs.
    fn is_inflight_too_high(&self) -> bool {
        self.rs.lost as f64 > self.rs.tx_in_flight as f64 * LOSS_THRESH
    }

    fn handle_inflight_too_high(&mut self, now: Instant) {
        self.prev_probe_too_high = true;
        self.is_bw_probe_sample = false;
        if !self.rs.is_app_limited {
            self.inflight_longterm =
                (self.rs.tx_in_flight as f64).max(self.target_inflight() * BETA);
        }
        if self.state == State::ProbeBwUp {
            self.start_probe_bw_down(now);
        }
    }

    /// AdaptLongTermModel (§5.3.3.6); true when it decided a state transition.
    fn adapt_long_term_model(&mut self) -> bool {
        if self.ack_phase == AckPhase::ProbeStarting && self.round_start {
            self.ack_phase = AckPhase::ProbeFeedback;
        }
        if self.ack_phase == AckPhase::ProbeStopping && self.round_start {
            self.is_bw_probe_sample = false;
            self.ack_phase = AckPhase::Init;
            if self.state.is_probe_bw() && !self.rs.is_app_limited {
                // AdvanceMaxBwFilter.
                self.cycle_count += 1;
            }
            if self.state.is_probe_bw()
                && self.prev_probe_precautionary
                && !self.prev_probe_too_high
            {
                self.start_probe_bw_refill();
                return true;
            }
        }
        if !self.is_inflight_too_high() {
            if self.inflight_longterm.is_infinite() {
                return false;
            }
            if self.rs.tx_in_flight as f64 > self.inflight_longterm {
                self.inflight_longterm = self.rs.tx_in_flight as f64;
            }
            if self.state == State::ProbeBwUp {
                self.probe_inflight_longterm_upward();
            }
        }
        false
    }

    fn is_time_to_probe_bw(&mut self, now: Instant) -> bool {
        let reno_rounds = (self.target_inflight() / self.smss as f64).min(63.0) as u64;
        if now > self.cycle_stamp + self.bw_probe_wait || self.rounds_since_probe_up >= reno_rounds
        {
            self.start_probe_bw_refill();
            return true;
        }
        false
    }

    fn is_time_to_cruise(&self, in_flight: u64) -> bool {
        let in_flight = in_flight as f64;
        in_flight <= self.inflight_with_headroom() && in_flight <= self.inflight(1.0)
    }

    fn is_time_to_go_down(&mut self, in_flight: u64) -> bool {
        if self.prev_probe_too_high && in_flight as f64 >= self.inflight_longterm {
            self.prev_probe_precautionary = true;
            return true;
        }
        if self.is_cwnd_limited && self.cwnd as f64 >= self.inflight_longterm {
            self.reset_full_bw();
            self.full_bw = self.rs.delivery_rate;
        } else if self.full_bw_now {
            return true;
        }
        false
    }

    /// UpdateProbeBWCyclePhase (§5.3.3.6).
    fn update_probe_bw_cycle_phase(&mut self, now: Instant, in_flight: u64) {
        if !self.full_bw_reached || self.adapt_long_term_model() || !self.state.is_probe_bw() {
            return;
        }
        let state = self.state;
        match state {
            State::ProbeBwDown
                if !self.is_time_to_probe_bw(now) && self.is_time_to_cruise(in_flight) =>
            {
                self.start_probe_bw_cruise();
            }
            State::ProbeBwCruise => {
                self.is_time_to_probe_bw(now);
            }
            State::ProbeBwRefill if self.round_start => {
                self.is_bw_probe_sample = true;
                self.start_probe_bw_up();
            }
            State::ProbeBwUp if self.is_time_to_go_down(in_flight) => {
                self.prev_probe_too_high = false;
                self.start_probe_bw_down(now);
            }
            _ => {}
        }
    }

    /// UpdateMinRTT (§5.5.7).
    fn update_min_rtt(&mut self, now: Instant) {
        self.probe_rtt_expired = now > self.probe_rtt_min_stamp + PROBE_RTT_INTERVAL;
        if let Some(rtt) = self.rs.rtt {
            if self.probe_rtt_min_delay.is_none_or(|min| rtt < min) || self.probe_rtt_expired {
                self.probe_rtt_min_delay = Some(rtt);
                self.probe_rtt_min_stamp = now;
            }
        }
        let expired = now > self.min_rtt_stamp + MIN_RTT_FILTER_LEN;
        if let Some(delay) = self.probe_rtt_min_delay {
            if self.min_rtt.is_none_or(|min| delay < min) || expired {
                self.min_rtt = Some(delay);
                self.min_rtt_stamp = self.probe_rtt_min_stamp;
            }
        }
    }

    fn probe_rtt_cwnd(&self) -> u64 {
        (self.bdp_multiple(PROBE_RTT_CWND_GAIN) as u64).max(self.min_pipe_cwnd())
    }

    fn save_cwnd(&mut self) {
        if self.recovery_start.is_none() && self.state != State::ProbeRtt {
            self.prior_cwnd = self.cwnd;
        } else {
            self.prior_cwnd = self.prior_cwnd.max(self.cwnd);
        }
    }

    fn restore_cwnd(&mut self) {
        self.cwnd = self.cwnd.max(self.prior_cwnd);
    }

    /// CheckProbeRTT (§5.3.4.4).
    fn check_probe_rtt(&mut self, now: Instant, in_flight: u64) {
        if self.state != State::ProbeRtt && self.probe_rtt_expired && !self.idle_restart {
            self.state = State::ProbeRtt;
            self.pacing_gain = 1.0;
            self.cwnd_gain = PROBE_RTT_CWND_GAIN;
            self.save_cwnd();
            self.probe_rtt_done_stamp = None;
            self.ack_phase = AckPhase::ProbeStopping;
            self.start_round();
        }
        if self.state == State::ProbeRtt {
            // HandleProbeRTT: low rate samples of ProbeRTT are application-limited.
            self.app_limited = (self.delivered + in_flight).max(1);
            match self.probe_rtt_done_stamp {
                None if in_flight <= self.probe_rtt_cwnd() => {
                    self.probe_rtt_done_stamp = Some(now + PROBE_RTT_DURATION);
                    self.probe_rtt_round_done = false;
                    self.start_round();
                }
                Some(_) => {
                    if self.round_start {
                        self.probe_rtt_round_done = true;
                    }
                    if self.probe_rtt_round_done {
                        self.check_probe_rtt_done(now);
                    }
                }
                None => {}
            }
        }
        if self.rs.delivered > 0 {
            self.idle_restart = false;
        }
    }

    fn check_probe_rtt_done(&mut self, now: Instant) {
        if self.probe_rtt_done_stamp.is_some_and(|done| now > done) {
            self.probe_rtt_min_stamp = now;
            self.restore_cwnd();
            // ExitProbeRTT.
            self.reset_short_term_model();
            if self.full_bw_reached {
                self.start_probe_bw_down(now);
                self.start_probe_bw_cruise();
            } else {
                self.enter_startup();
            }
        }
    }

    // --- Control parameters (§5.6) ---

    fn set_pacing_rate_with_gain(&mut self, gain: f64) {
        let rate = gain * self.bw * (1.0 - PACING_MARGIN);
        if self.full_bw_reached || rate > self.pacing_rate {
            self.pacing_rate = rate;
        }
    }

    /// SetCwnd (§5.6.4.4) with BoundCwndForProbeRTT and BoundCwndForModel.
    fn set_cwnd(&mut self) {
        let max_inflight =
            self.quantization_budget(self.bdp_multiple(self.cwnd_gain) + self.extra_acked) as u64;
        if self.full_bw_reached {
            self.cwnd = (self.cwnd + self.rs.newly_acked).min(max_inflight);
        } else if self.cwnd < max_inflight || self.delivered < self.initial_cwnd {
            self.cwnd += self.rs.newly_acked;
        }
        self.cwnd = self.cwnd.max(self.min_pipe_cwnd());
        if self.state == State::ProbeRtt {
            self.cwnd = self.cwnd.min(self.probe_rtt_cwnd());
        }
        let mut cap = f64::INFINITY;
        if self.state.is_probe_bw() && self.state != State::ProbeBwCruise {
            cap = self.inflight_longterm;
        } else if matches!(self.state, State::ProbeRtt | State::ProbeBwCruise) {
            cap = self.inflight_with_headroom();
        }
        let cap = cap
            .min(self.inflight_shortterm)
            .max(self.min_pipe_cwnd() as f64);
        if cap < self.cwnd as f64 {
            self.cwnd = cap as u64;
        }
    }

    /// NoteLoss (§5.5.10.2): the first loss of a round saves the state to undo.
    fn note_loss(&mut self) {
        if !self.is_loss_in_round {
            self.loss_round_delivered = self.delivered;
            self.save_cwnd();
        }
        self.is_loss_in_round = true;
    }
}

impl Controller for Bbr {
    fn on_sent(
        &mut self,
        now: Instant,
        number: u64,
        bytes: u64,
        bytes_in_flight: u64,
        app_limited: bool,
    ) {
        if bytes_in_flight <= bytes {
            // Nothing was in flight: samples start now (§4.1.2.4), and HandleRestartFromIdle
            // (§5.4.1) when the application had stopped.
            self.first_send_time = Some(now);
            self.delivered_time = Some(now);
            if self.app_limited != 0 {
                self.idle_restart = true;
                self.extra_acked_interval_start = now;
                if self.state.is_probe_bw() {
                    self.set_pacing_rate_with_gain(1.0);
                } else if self.state == State::ProbeRtt {
                    self.check_probe_rtt_done(now);
                }
            }
        }
        if app_limited {
            // MarkConnectionAppLimited (§4.1.2.6).
            self.app_limited = (self.delivered + bytes_in_flight).max(1);
        }
        if bytes_in_flight >= self.cwnd {
            self.cwnd_limited_in_round = true;
        }
        let state = SentState {
            delivered: self.delivered,
            delivered_time: self.delivered_time.unwrap_or(now),
            first_send_time: self.first_send_time.unwrap_or(now),
            send_time: now,
            tx_in_flight: bytes_in_flight,
            lost: self.lost,
            is_app_limited: self.app_limited != 0,
        };
        if self.sent.is_empty() {
            self.first_number = number;
        }
        let Some(index) = number
            .checked_sub(self.first_number)
            .and_then(|i| usize::try_from(i).ok())
        else {
            return;
        };
        if index < self.sent.len() {
            return;
        }
        self.sent.resize(index, None);
        self.sent.push_back(Some(state));
    }

    fn on_ack(&mut self, now: Instant, packet: &PacketInfo, _: bool, _: &RttEstimator) {
        self.delivered += packet.bytes;
        self.rs.newly_acked += packet.bytes;
        if self.recovery_start.is_some_and(|start| packet.sent > start) {
            // Loss recovery is over (RFC 9002 §7.3.2): the last known good window returns.
            self.recovery_start = None;
            self.restore_cwnd();
        }
        if let Some(number) = packet.number {
            if let Some(state) = self.packet_state(number) {
                self.update_rate_sample(now, number, &state);
            }
        }
    }

    fn on_lost(&mut self, now: Instant, packet: &PacketInfo) {
        self.lost += packet.bytes;
        self.rs.newly_lost += packet.bytes;
        let Some(number) = packet.number else {
            return;
        };
        if self.last_lost_number.is_none_or(|last| number != last + 1) {
            self.lost_ranges_in_round += 1;
        }
        self.last_lost_number = Some(number);
        let Some(state) = self.packet_state(number) else {
            return;
        };
        // HandleLostPacket (§5.5.10.2).
        self.note_loss();
        if !self.is_bw_probe_sample {
            return;
        }
        self.rs.tx_in_flight = state.tx_in_flight;
        self.rs.lost = self.lost - state.lost;
        self.rs.is_app_limited = state.is_app_limited;
        if self.is_inflight_too_high() {
            // InflightAtLoss: where in this packet losses crossed LOSS_THRESH.
            let size = packet.bytes as f64;
            let inflight_prev = self.rs.tx_in_flight as f64 - size;
            let lost_prev = self.rs.lost as f64 - size;
            let lost_prefix = (LOSS_THRESH * inflight_prev - lost_prev) / (1.0 - LOSS_THRESH);
            self.rs.tx_in_flight = (inflight_prev + lost_prefix).max(0.0) as u64;
            self.handle_inflight_too_high(now);
        }
    }

    fn on_ack_done(&mut self, now: Instant, bytes_in_flight: u64, rtt_sample: Option<Duration>) {
        self.rs.rtt = rtt_sample;
        self.generate_rate_sample();
        // UpdateModelAndState.
        self.update_latest_delivery_signals();
        self.update_congestion_signals();
        self.update_ack_aggregation(now);
        self.check_full_bw_reached();
        self.check_startup_done(now);
        self.check_drain_done(now, bytes_in_flight);
        self.update_probe_bw_cycle_phase(now, bytes_in_flight);
        self.update_min_rtt(now);
        self.check_probe_rtt(now, bytes_in_flight);
        self.advance_latest_delivery_signals();
        self.bw = self.max_bw.min(self.bw_shortterm);
        // UpdateControlParameters.
        self.set_pacing_rate_with_gain(self.pacing_gain);
        self.set_cwnd();
        self.rs = RateSample::default();
    }

    fn on_congestion_event(&mut self, now: Instant, latest_sent: Instant, persistent: bool) {
        if persistent {
            // RFC 9002 §7.6.2, RFC9002-050; the model stays, and the window regrows from
            // it as acknowledgments come (OnEnterRTO, §5.6.4.3).
            self.save_cwnd();
            self.cwnd = minimum_window(self.smss);
            return;
        }
        if self
            .recovery_start
            .is_some_and(|start| latest_sent <= start)
        {
            return;
        }
        // OnEnterFastRecovery (§5.6.4.3); the model reacts to the losses themselves.
        self.save_cwnd();
        self.recovery_start = Some(now);
        self.note_loss();
    }

    fn on_max_datagram_size(&mut self, max_datagram_size: u64) {
        if self.cwnd == self.initial_cwnd {
            self.cwnd = initial_window(max_datagram_size);
        }
        self.initial_cwnd = initial_window(max_datagram_size);
        self.smss = max_datagram_size;
        self.cwnd = self.cwnd.max(minimum_window(max_datagram_size));
    }

    fn window(&self) -> u64 {
        self.cwnd
    }

    fn pacing_rate(&self) -> Option<u64> {
        Some((self.pacing_rate as u64).max(1))
    }

    fn ssthresh(&self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u64 = 1200;

    /// A sender that keeps its window full over a path of `rtt` and `rate` bytes per second,
    /// losing every `loss_every`th packet, for `duration`; returns the controller.
    fn run(rtt: Duration, rate: f64, loss_every: Option<u64>, duration: Duration) -> Bbr {
        let start = Instant::now();
        let mut bbr = Bbr::new(MSS, start, 1);
        let estimator = RttEstimator::new(rtt);
        let mut now = start;
        let mut next = 0u64;
        let mut in_flight: VecDeque<(u64, Instant, Instant)> = VecDeque::new();
        let mut bytes_in_flight = 0;
        let mut link_free = start;
        while now < start + duration {
            // Send what the window and pacing allow, serialised by the bottleneck.
            while bytes_in_flight + MSS <= bbr.window() {
                bytes_in_flight += MSS;
                bbr.on_sent(now, next, MSS, bytes_in_flight, false);
                let depart = link_free.max(now) + Duration::from_secs_f64(MSS as f64 / rate);
                link_free = depart;
                in_flight.push_back((next, now, depart + rtt));
                next += 1;
            }
            let Some(&(number, sent, arrives)) = in_flight.front() else {
                break;
            };
            now = now.max(arrives);
            in_flight.pop_front();
            bytes_in_flight -= MSS;
            let packet = PacketInfo {
                number: Some(number),
                sent,
                bytes: MSS,
            };
            if loss_every.is_some_and(|n| number % n == n - 1) {
                bbr.on_lost(now, &packet);
                bbr.on_congestion_event(now, sent, false);
            } else {
                bbr.on_ack(now, &packet, false, &estimator);
            }
            bbr.on_ack_done(now, bytes_in_flight, Some(now - sent));
        }
        bbr
    }

    #[test]
    fn estimates_the_bottleneck_and_keeps_about_two_bdp_in_flight() {
        // 10 MB/s over 20 ms: a BDP of 200 kB.
        let bbr = run(
            Duration::from_millis(20),
            10e6,
            None,
            Duration::from_secs(5),
        );
        assert!(bbr.full_bw_reached);
        assert!(bbr.state.is_probe_bw() || bbr.state == State::ProbeRtt);
        let bw = bbr.max_bw;
        assert!((9e6..11e6).contains(&bw), "max_bw {bw}");
        // The propagation delay and one packet's serialisation.
        assert_eq!(bbr.min_rtt, Some(Duration::from_micros(20_120)));
        assert!(
            (150_000..600_000).contains(&bbr.window()),
            "cwnd {}",
            bbr.window()
        );
    }

    #[test]
    fn random_loss_below_the_threshold_does_not_cut_the_rate() {
        // One packet in a hundred lost: 1 %, below LOSS_THRESH. A loss-based controller
        // would hold a few dozen packets in flight here; BBR keeps the pipe full.
        let bbr = run(
            Duration::from_millis(20),
            10e6,
            Some(100),
            Duration::from_secs(5),
        );
        let rate = bbr.pacing_rate().unwrap() as f64;
        assert!(rate > 8e6, "pacing at {rate} B/s");
        assert!(bbr.window() > 150_000, "cwnd {}", bbr.window());
    }

    #[test]
    fn max_filter_keeps_the_best_of_its_window() {
        let mut filter = MaxFilter::default();
        assert_eq!(filter.update(0, 5.0, 2), 5.0);
        assert_eq!(filter.update(1, 3.0, 2), 5.0);
        assert_eq!(filter.update(2, 4.0, 2), 5.0);
        // Time 3: the sample of time 0 left the window; the best since is 4.
        assert_eq!(filter.update(3, 1.0, 2), 4.0);
        assert_eq!(filter.update(9, 2.0, 2), 2.0);
    }
}
