// Duplicate detection: does a new report join an open case of the same customer, or open a new
// one? Pure and explainable: every decision carries the signals behind it, mirroring
// `liaison.intake.v1.DuplicateAssessment`.
import Foundation

/// The report being submitted, as the matcher needs it.
public struct NewReport: Hashable, Sendable {
    /// `customers/{id}`.
    public var customer: String
    /// The submitting agent, `agents/{id}`, or "".
    public var agent: String
    /// What the customer said.
    public var text: String
    /// The symptom, given or inferred (see `init(_:customerOwningAgent:classifier:now:)`). With
    /// the default weights, two paraphrases (Jaccard ~0.4) join only if symptom or service agree:
    /// resolve the symptom before matching.
    public var symptom: SymptomKind
    /// Suspected service, or "".
    public var serviceHint: String
    /// When the customer contacted support.
    public var receiveTime: Date
    /// The help-desk ticket, if any.
    public var externalTicket: ExternalReference?
    /// The customer's `owning_agent`, the case owner when the report has no agent ("" if none).
    public var customerOwningAgent: String
    /// Whether `symptom` was inferred from the text rather than given by the agent. An inferred
    /// symptom is weak evidence: a conflict involving one lowers the score but never vetoes.
    public var symptomInferred: Bool

    /// Creates the value from its fields.
    public init(customer: String, agent: String, text: String, symptom: SymptomKind = .unspecified,
                serviceHint: String = "", receiveTime: Date, externalTicket: ExternalReference? = nil,
                customerOwningAgent: String = "", symptomInferred: Bool = false) {
        self.symptomInferred = symptomInferred
        self.customer = customer
        self.agent = agent
        self.text = text
        self.symptom = symptom
        self.serviceHint = serviceHint
        self.receiveTime = receiveTime
        self.externalTicket = externalTicket
        self.customerOwningAgent = customerOwningAgent
    }
}

extension NewReport {
    /// The matcher's view of a validated submission. The symptom is the submitted one, or the one
    /// `classifier` infers from the text when unspecified (so that the symptom signal is known on
    /// both sides as often as possible; store the same resolved symptom on the report).
    /// `receiveTime` must be set (validation guarantees it); `nil` falls back to `now`. `tokens`,
    /// when given, are the text split by the classifier's normalizer (computed once by a caller
    /// that also shingles them).
    public init(_ submission: ReportSubmission, customerOwningAgent: String = "",
                classifier: SymptomClassifier = SymptomClassifier(), tokens: [String]? = nil, now: Date) {
        self.init(customer: submission.customer, agent: submission.agent, text: submission.text,
                  symptom: tokens.map { classifier.resolve(submission.symptom, tokens: $0) }
                      ?? classifier.resolve(submission.symptom, text: submission.text),
                  serviceHint: submission.serviceHint, receiveTime: submission.receiveTime ?? now,
                  externalTicket: submission.externalTicket, customerOwningAgent: customerOwningAgent,
                  symptomInferred: !submission.symptom.isSpecified)
    }
}

/// An earlier report of a candidate case. Give `text` for an exact Jaccard score; with only a
/// `fingerprint` the matcher uses the MinHash estimate (and says so in the signal detail).
public struct CandidateReport: Hashable, Sendable {
    /// `reports/{id}`.
    public var name: String
    /// The report text, when the repository loaded it.
    public var text: String?
    /// The stored MinHash fingerprint, if any.
    public var fingerprint: ReportFingerprint?
    /// The report's (resolved) symptom.
    public var symptom: SymptomKind
    /// Suspected service, or "".
    public var serviceHint: String
    /// When the customer contacted support.
    public var receiveTime: Date
    /// The help-desk ticket, if any.
    public var externalTicket: ExternalReference?
    /// Whether `symptom` was inferred from the text (see `NewReport.symptomInferred`).
    public var symptomInferred: Bool

    /// Creates the value from its fields.
    public init(name: String, text: String?, fingerprint: ReportFingerprint? = nil, symptom: SymptomKind = .unspecified,
                serviceHint: String = "", receiveTime: Date, externalTicket: ExternalReference? = nil,
                symptomInferred: Bool = false) {
        self.symptomInferred = symptomInferred
        self.name = name
        self.text = text
        self.fingerprint = fingerprint
        self.symptom = symptom
        self.serviceHint = serviceHint
        self.receiveTime = receiveTime
        self.externalTicket = externalTicket
    }
}

/// A case the new report might join (the repository passes the customer's open cases).
public struct CaseCandidate: Hashable, Sendable {
    /// `cases/{id}`.
    public var name: String
    /// `customers/{id}`.
    public var customer: String
    /// Lifecycle state; only OPEN cases are joined.
    public var state: CaseState
    /// `agents/{id}`.
    public var owner: String
    /// The case's reports (any order).
    public var reports: [CandidateReport]

    /// Creates the value from its fields.
    public init(name: String, customer: String, state: CaseState = .open, owner: String, reports: [CandidateReport]) {
        self.name = name
        self.customer = customer
        self.state = state
        self.owner = owner
        self.reports = reports
    }

    /// Receive time of the newest report, `nil` for a case without reports.
    public var lastReportTime: Date? { reports.map(\.receiveTime).max() }
    /// Receive time of the oldest report, `nil` for a case without reports.
    public var firstReportTime: Date? { reports.map(\.receiveTime).min() }
}

/// Tuning of duplicate detection.
public struct DuplicateConfig: Sendable, Hashable {
    /// A report may join a case only if received within this interval of the case's reports: after
    /// the case's last report by at most `window`, or (back-filled) before its first by at most
    /// `window`. Default 6 hours.
    public var window: TimeInterval = 6 * 3600
    /// Combined score at or above which a report is a duplicate. Default 0.5.
    public var threshold: Double = 0.5
    /// Weight of text similarity (exact Jaccard of shingles).
    public var textWeight: Double = 0.6
    /// Weight of the symptom signal.
    public var symptomWeight: Double = 0.25
    /// Weight of the service-hint signal.
    public var serviceWeight: Double = 0.15
    /// Score of the symptom and service signals when either side does not say (unknown is neither
    /// agreement nor conflict).
    public var unknownSignalScore: Double = 0.5
    /// Whether two different symptoms, both given by agents (e.g. SLOW vs DATA), rule a match out
    /// whatever the text says. Default true: a different symptom is a different problem. A
    /// symptom inferred from the text never vetoes (it only scores 0).
    public var requireCompatibleSymptom: Bool = true
    /// Text shingling and fingerprints.
    public var similarity: SimilarityConfig = .standard

    /// The defaults.
    public init() {}
}

/// One signal behind a duplicate decision (`DuplicateAssessment.Signal`).
public struct DuplicateSignal: Hashable, Sendable {
    /// "same_customer", "same_external_ticket", "text_similarity", "same_symptom", "same_service"
    /// or "time_proximity".
    public var name: String
    /// Signal score in [0, 1].
    public var score: Double
    /// Weight in the combined score (0 for signals that only gate or inform).
    public var weight: Double
    /// Human-readable explanation.
    public var detail: String

    /// Creates the value from its fields.
    public init(name: String, score: Double, weight: Double, detail: String) {
        self.name = name
        self.score = score
        self.weight = weight
        self.detail = detail
    }
}

/// How a report was judged (`liaison.intake.v1.DuplicateAssessment`).
public struct DuplicateAssessment: Hashable, Sendable {
    /// Whether the report is a duplicate of `matchedReport`.
    public var duplicate: Bool
    /// The most similar earlier report considered, whether or not it crossed the threshold; "" if
    /// no report was eligible.
    public var matchedReport: String
    /// Combined score against `matchedReport`.
    public var similarity: Double
    /// The threshold in force.
    public var threshold: Double
    /// The signals behind `similarity`.
    public var signals: [DuplicateSignal]

    /// Creates the value from its fields.
    public init(duplicate: Bool, matchedReport: String, similarity: Double, threshold: Double, signals: [DuplicateSignal]) {
        self.duplicate = duplicate
        self.matchedReport = matchedReport
        self.similarity = similarity
        self.threshold = threshold
        self.signals = signals
    }

    /// The named signal, if present.
    public func signal(_ name: String) -> DuplicateSignal? { signals.first { $0.name == name } }
}

/// The matcher's verdict: join an existing open case, or open a new one.
public struct MatchDecision: Hashable, Sendable {
    /// What to do with the report.
    public enum Action: Hashable, Sendable {
        /// Add the report to this open case (`cases/{id}`); its owner stays.
        case joinCase(String)
        /// Open a new case owned by this agent (the submitting agent, else the customer's owning
        /// agent; "" if neither is known).
        case openCase(owner: String)
    }

    /// Join or open.
    public var action: Action
    /// The assessment to store on the report.
    public var assessment: DuplicateAssessment
    /// The case whose report matched best (joined or not), "" if none was eligible.
    public var bestCase: String
    /// One sentence saying why, for logs and case notes.
    public var reason: String

    /// Whether the report joins an existing case as a duplicate.
    public var isDuplicate: Bool { assessment.duplicate }
    /// The case joined, `nil` when a new case opens.
    public var joinedCase: String? {
        if case .joinCase(let c) = action { return c }
        return nil
    }
}

/// Pure duplicate detection.
public enum DuplicateMatcher {
    /// The score of the new report against one earlier report, with its signals.
    public struct PairScore: Hashable, Sendable {
        /// Combined weighted score in [0, 1] (0 when vetoed).
        public var score: Double
        /// Whether a hard rule rules the pair out (conflicting symptoms).
        public var vetoed: Bool
        /// Whether the pair shares the external ticket (always a duplicate).
        public var sameTicket: Bool
        /// The signals behind `score`.
        public var signals: [DuplicateSignal]
        /// Text similarity details (shared shingles), when texts were compared exactly.
        public var text: SimilarityExplanation?
    }

    /// Decides whether `candidate` joins one of `openCases` or opens a new case.
    ///
    /// Rules, in order:
    /// 1. Only OPEN cases of the same customer are eligible, and only their reports received within
    ///    `config.window` of the case (see `DuplicateConfig.window`).
    /// 2. The same external ticket (system and id) as an eligible report is always a duplicate.
    /// 3. Otherwise each eligible report gets a combined score: weighted mean of text similarity
    ///    (exact Jaccard of shingles, or the MinHash estimate when only a fingerprint is known),
    ///    symptom agreement and service-hint agreement (1 equal, 0 different, `unknownSignalScore`
    ///    when a side does not say). Conflicting symptoms veto the pair when
    ///    `requireCompatibleSymptom`.
    /// 4. The best non-vetoed report at or above `threshold` decides the case joined (ties: newer
    ///    report, then name). Otherwise a new case opens, owned by the submitting agent.
    ///
    /// `candidateShingles` and `candidateFingerprint`, when given, must be those of
    /// `candidate.text` under `config.similarity` (callers that also store the fingerprint compute
    /// them once).
    public static func match(candidate: NewReport, openCases: [CaseCandidate],
                             config: DuplicateConfig = .init(),
                             candidateShingles precomputedShingles: Set<String>? = nil,
                             candidateFingerprint precomputedFingerprint: ReportFingerprint? = nil) -> MatchDecision {
        let candidateShingles = precomputedShingles ?? config.similarity.shingles(candidate.text)
        var candidateFingerprint = precomputedFingerprint

        struct Scored {
            var caseName: String
            var report: CandidateReport
            var pair: RawScore
        }
        var scored: [Scored] = []
        var sameCustomerCases = 0
        for c in openCases where c.customer == candidate.customer && c.state == .open {
            sameCustomerCases += 1
            guard let first = c.firstReportTime, let last = c.lastReportTime,
                  caseInWindow(candidate: candidate, first: first, last: last, config: config) else { continue }
            for r in c.reports {
                if r.text == nil && candidateFingerprint == nil && r.fingerprint != nil {
                    candidateFingerprint = ReportFingerprint(shingles: candidateShingles, config: config.similarity)
                }
                let pair = rawScore(candidate: candidate, candidateShingles: candidateShingles,
                                    candidateFingerprint: candidateFingerprint, against: r, config: config)
                scored.append(Scored(caseName: c.name, report: r, pair: pair))
            }
        }

        let newOwner = candidate.agent.isEmpty ? candidate.customerOwningAgent : candidate.agent
        func ordered(_ a: Scored, _ b: Scored) -> Bool {
            ranksBefore(a.pair, receivedAt: a.report.receiveTime, b.pair, receivedAt: b.report.receiveTime)
                ?? (a.report.name < b.report.name)
        }
        guard let best = scored.min(by: ordered) else {
            let why = sameCustomerCases == 0
                ? "no open case of \(candidate.customer)"
                : "no open case of \(candidate.customer) has reports within \(formatInterval(config.window))"
            return MatchDecision(
                action: .openCase(owner: newOwner),
                assessment: DuplicateAssessment(duplicate: false, matchedReport: "", similarity: 0,
                                                threshold: config.threshold, signals: []),
                bestCase: "", reason: "new case: \(why)")
        }

        let isDuplicate = best.pair.sameTicket || (!best.pair.vetoed && best.pair.score >= config.threshold)
        // The signals and their explanations are written for the deciding pair only.
        let assessment = DuplicateAssessment(duplicate: isDuplicate, matchedReport: best.report.name,
                                             similarity: best.pair.score, threshold: config.threshold,
                                             signals: signals(candidate: candidate, against: best.report, best.pair, config: config))
        let scoreText = twoDecimals(best.pair.score)
        let thresholdText = twoDecimals(config.threshold)
        if isDuplicate {
            let why = best.pair.sameTicket
                ? "same external ticket as \(best.report.name)"
                : "score \(scoreText) >= \(thresholdText) against \(best.report.name)"
            return MatchDecision(action: .joinCase(best.caseName), assessment: assessment, bestCase: best.caseName,
                                 reason: "duplicate, joins \(best.caseName): \(why)")
        }
        let why = best.pair.vetoed
            ? "best match \(best.report.name) has a different symptom"
            : "best match \(best.report.name) scored \(scoreText) < \(thresholdText)"
        return MatchDecision(action: .openCase(owner: newOwner), assessment: assessment, bestCase: best.caseName,
                             reason: "new case: \(why)")
    }

    /// Scores the new report against one earlier report (no customer, state or window checks).
    public static func score(candidate: NewReport, against report: CandidateReport,
                             config: DuplicateConfig = .init()) -> PairScore {
        score(candidate: candidate, candidateShingles: config.similarity.shingles(candidate.text),
              candidateFingerprint: nil, against: report, config: config)
    }

    /// A pair's scores without their explanations (the matcher scores every eligible report but
    /// explains only the deciding one).
    package struct RawScore {
        package var score: Double
        package var vetoed: Bool
        package var sameTicket: Bool
        package var textScore: Double
        /// How the text was compared: exact shingles, MinHash fingerprints, or not at all.
        package var textBasis: TextBasis
        var explanation: SimilarityExplanation?
        /// How the symptoms and the service hints compared; their scores follow from it.
        var symptom: Comparison
        var symptomScore: Double
        var service: Comparison
        var serviceScore: Double

        package enum TextBasis { case exact, fingerprint, none }
        enum Comparison { case same, different, unknown }
    }

    private static func score(candidate: NewReport, candidateShingles: Set<String>,
                              candidateFingerprint: ReportFingerprint?, against r: CandidateReport,
                              config: DuplicateConfig) -> PairScore {
        let raw = rawScore(candidate: candidate, candidateShingles: candidateShingles,
                           candidateFingerprint: candidateFingerprint, against: r, config: config)
        return PairScore(score: raw.score, vetoed: raw.vetoed, sameTicket: raw.sameTicket,
                         signals: signals(candidate: candidate, against: r, raw, config: config), text: raw.explanation)
    }

    /// Whether a case whose (given) reports span `first`...`last` is within the window of the
    /// new report (rule 1 of `match`).
    package static func caseInWindow(candidate: NewReport, first: Date, last: Date, config: DuplicateConfig) -> Bool {
        candidate.receiveTime.timeIntervalSince(last) <= config.window
            && first.timeIntervalSince(candidate.receiveTime) <= config.window
    }

    /// Which of two scored pairs the matcher prefers: same ticket, then not vetoed, then the
    /// higher score, then the newer report; nil when all of these tie (the matcher then takes
    /// the report whose name sorts first).
    package static func ranksBefore(_ a: RawScore, receivedAt ta: Date, _ b: RawScore, receivedAt tb: Date) -> Bool? {
        let ka = (a.sameTicket ? 1 : 0, a.vetoed ? 0 : 1, a.score)
        let kb = (b.sameTicket ? 1 : 0, b.vetoed ? 0 : 1, b.score)
        if ka != kb { return ka > kb }
        if ta != tb { return ta > tb }
        return nil
    }

    /// How a pair's texts compared (the text part of `RawScore`).
    package struct TextComparison {
        package var score: Double
        package var basis: RawScore.TextBasis
        package var explanation: SimilarityExplanation?

        package init(score: Double, basis: RawScore.TextBasis, explanation: SimilarityExplanation? = nil) {
            self.score = score
            self.basis = basis
            self.explanation = explanation
        }

        /// Neither text nor fingerprint on the earlier report.
        package static let none = TextComparison(score: 0, basis: .none, explanation: nil)
    }

    package static func rawScore(candidate: NewReport, candidateShingles: Set<String>,
                         candidateFingerprint: ReportFingerprint?, against r: CandidateReport,
                         config: DuplicateConfig) -> RawScore {
        let text: TextComparison
        if let t = r.text {
            let e = Similarity.explain(candidateShingles, config.similarity.shingles(t))
            text = TextComparison(score: e.score, basis: .exact, explanation: e)
        } else if let fp = r.fingerprint {
            let mine = candidateFingerprint ?? ReportFingerprint(shingles: candidateShingles, config: config.similarity)
            text = TextComparison(score: mine.estimatedJaccard(with: fp), basis: .fingerprint, explanation: nil)
        } else {
            text = .none
        }
        return rawScore(candidate: candidate, against: r, text: text, config: config)
    }

    /// The pair's score given how the texts compared: `r`'s ticket, symptom and service hint
    /// are read, its text and fingerprint are not (callers that compare stored fingerprints
    /// without decoding them pass the comparison).
    package static func rawScore(candidate: NewReport, against r: CandidateReport, text: TextComparison,
                         config: DuplicateConfig) -> RawScore {
        // Same external ticket: the help desk resubmitted the same ticket.
        var sameTicket = false
        if let t = candidate.externalTicket, let u = r.externalTicket, t.system == u.system, t.id == u.id {
            sameTicket = true
        }
        let textScore = text.score, basis = text.basis, explanation = text.explanation

        // Symptom: a known mismatch vetoes, unless a side's symptom was only inferred.
        let symptom: RawScore.Comparison = !(candidate.symptom.isSpecified && r.symptom.isSpecified) ? .unknown
            : candidate.symptom == r.symptom ? .same : .different
        let vetoed = symptom == .different && config.requireCompatibleSymptom
            && !(candidate.symptomInferred || r.symptomInferred)

        // Service hint (compared without regard to case).
        let service: RawScore.Comparison = candidate.serviceHint.isEmpty || r.serviceHint.isEmpty ? .unknown
            : candidate.serviceHint.caseInsensitiveEquals(r.serviceHint) ? .same : .different

        func score(_ c: RawScore.Comparison) -> Double {
            switch c {
            case .same: 1
            case .different: 0
            case .unknown: config.unknownSignalScore
            }
        }
        let symptomScore = score(symptom)
        let serviceScore = score(service)

        let totalWeight = config.textWeight + config.symptomWeight + config.serviceWeight
        var combined = totalWeight > 0
            ? (config.textWeight * textScore + config.symptomWeight * symptomScore + config.serviceWeight * serviceScore)
                / totalWeight
            : 0
        if sameTicket { combined = 1 }
        if vetoed && !sameTicket { combined = 0 }
        return RawScore(score: combined, vetoed: vetoed && !sameTicket, sameTicket: sameTicket, textScore: textScore,
                        textBasis: basis, explanation: explanation, symptom: symptom, symptomScore: symptomScore,
                        service: service, serviceScore: serviceScore)
    }

    /// The signals behind a pair's score, each with its explanation.
    static func signals(candidate: NewReport, against r: CandidateReport, _ raw: RawScore,
                        config: DuplicateConfig) -> [DuplicateSignal] {
        var signals: [DuplicateSignal] = [
            DuplicateSignal(name: "same_customer", score: 1, weight: 0, detail: "both from \(candidate.customer)"),
        ]
        if raw.sameTicket, let t = candidate.externalTicket {
            signals.append(DuplicateSignal(name: "same_external_ticket", score: 1, weight: 0,
                                           detail: "same \(t.system) ticket"))
        }

        let textDetail: String
        switch raw.textBasis {
        case .exact: textDetail = raw.explanation?.summary ?? ""
        case .fingerprint: textDetail = "estimated jaccard \(twoDecimals(raw.textScore)) from MinHash fingerprints"
        case .none: textDetail = "earlier report has neither text nor fingerprint"
        }
        signals.append(DuplicateSignal(name: "text_similarity", score: raw.textScore, weight: config.textWeight,
                                       detail: textDetail))

        let symptomDetail: String
        switch raw.symptom {
        case .same: symptomDetail = "both \(candidate.symptom.protoName)"
        case .different:
            let inferred = candidate.symptomInferred || r.symptomInferred
            symptomDetail = "\(candidate.symptom.protoName) vs \(r.symptom.protoName)"
                + (inferred ? " (inferred from the text: no veto)" : "")
        case .unknown: symptomDetail = "symptom not known on both sides"
        }
        signals.append(DuplicateSignal(name: "same_symptom", score: raw.symptomScore, weight: config.symptomWeight,
                                       detail: symptomDetail))

        let serviceDetail: String
        switch raw.service {
        case .same: serviceDetail = "both \"\(candidate.serviceHint.lowercased())\""
        case .different: serviceDetail = "\"\(candidate.serviceHint.lowercased())\" vs \"\(r.serviceHint.lowercased())\""
        case .unknown: serviceDetail = "service hint not given on both sides"
        }
        signals.append(DuplicateSignal(name: "same_service", score: raw.serviceScore, weight: config.serviceWeight,
                                       detail: serviceDetail))

        // Time (informational: the window already gates).
        let apart = abs(candidate.receiveTime.timeIntervalSince(r.receiveTime))
        let timeScore = config.window > 0 ? max(0, 1 - apart / config.window) : 0
        signals.append(DuplicateSignal(name: "time_proximity", score: timeScore, weight: 0,
                                       detail: "reported \(formatInterval(apart)) apart"))
        return signals
    }

    /// "42 seconds", "4 minutes", "3 hours 5 minutes".
    static func formatInterval(_ t: TimeInterval) -> String {
        let s = Int(t.rounded())
        if s < 60 { return "\(s) second\(s == 1 ? "" : "s")" }
        let m = s / 60
        if m < 60 { return "\(m) minute\(m == 1 ? "" : "s")" }
        let h = m / 60
        let rest = m % 60
        return "\(h) hour\(h == 1 ? "" : "s")" + (rest > 0 ? " \(rest) minute\(rest == 1 ? "" : "s")" : "")
    }
}

extension String {
    /// Equal ignoring case, as `lowercased() == other.lowercased()`, without allocating for ASCII.
    func caseInsensitiveEquals(_ other: String) -> Bool {
        let x = utf8, y = other.utf8
        guard x.allSatisfy({ $0 < 0x80 }) && y.allSatisfy({ $0 < 0x80 }) else {
            return lowercased() == other.lowercased()
        }
        func lower(_ b: UInt8) -> UInt8 { b >= 0x41 && b <= 0x5A ? b + 0x20 : b }
        return x.count == y.count && zip(x, y).allSatisfy { lower($0) == lower($1) }
    }
}
