// Inference of a report's symptom from its text when the agent did not set one (the contract:
// "intake infers it from `text` when unspecified"), and the dominant symptom of a case.

/// What the classifier concluded, with the words that decided it.
public struct SymptomInference: Hashable, Sendable {
    /// The inferred symptom; `.unspecified` when no keyword matched.
    public var symptom: SymptomKind
    /// The normalised tokens that matched the winning symptom's keywords.
    public var matched: [String]
}

/// A small, explainable keyword classifier over normalised tokens (so "Fehler", "failing",
/// "ÉCHEC" and "errors" all count). Keywords cover English, German, French, Spanish, Italian and
/// Portuguese. The symptom with most keyword hits wins; ties go to the more severe symptom
/// (UNAVAILABLE, then ERRORS, DATA, SLOW).
public struct SymptomClassifier: Sendable {
    /// How texts are split into the tokens `infer(tokens:)` expects.
    public let normalizer: TextNormalizer
    private let keywords: [(SymptomKind, Set<String>)]

    /// Raw keyword lists per symptom, in tie-break order.
    public static let defaultKeywords: [(SymptomKind, [String])] = [
        (.unavailable, ["down", "outage", "unavailable", "unreachable", "offline", "inaccessible", "503", "502",
                        "ausfall", "ausgefallen", "unerreichbar", "panne", "indisponible", "caido", "caida", "irraggiungibile",
                        "disservizio", "fora", "indisponivel", "blackout", "dead"]),
        (.errors, ["error", "errors", "fail", "failing", "failed", "failure", "exception", "crash", "crashes", "500",
                   "broken", "bug", "fehler", "fehlgeschlagen", "absturz", "erreur", "echec", "plante", "fallo",
                   "falla", "errore", "erro", "falha"]),
        (.data, ["missing", "wrong", "incorrect", "lost", "stale", "duplicate", "duplicated", "corrupt", "corrupted",
                 "deleted", "disappeared", "outdated", "fehlt", "falsch", "verloren", "manquant", "perdu", "perdido",
                 "incorrecto", "mancante", "perso", "sbagliato", "errado"]),
        (.slow, ["slow", "slowly", "latency", "lag", "lagging", "timeout", "timeouts", "sluggish", "hang", "hangs",
                 "freeze", "freezes", "frozen", "langsam", "lent", "lenteur", "lento", "lenta", "lentezza", "lentidao"]),
    ]

    /// A classifier with the default keywords, normalised like report texts.
    public init(normalizer: TextNormalizer = .standard,
                keywords: [(SymptomKind, [String])] = SymptomClassifier.defaultKeywords) {
        self.normalizer = normalizer
        self.keywords = keywords.map { kind, words in
            (kind, Set(words.flatMap { normalizer.tokens($0) }))
        }
    }

    /// The symptom suggested by `text`.
    public func infer(_ text: String) -> SymptomInference { infer(tokens: normalizer.tokens(text)) }

    /// The symptom suggested by a text already split by `normalizer`.
    public func infer(tokens: [String]) -> SymptomInference {
        var best = SymptomInference(symptom: .unspecified, matched: [])
        for (kind, words) in keywords {
            let hits = tokens.filter { words.contains($0) }
            if hits.count > best.matched.count {
                best = SymptomInference(symptom: kind, matched: hits)
            }
        }
        return best
    }

    /// The given symptom when specified, else the inferred one.
    public func resolve(_ given: SymptomKind, text: String) -> SymptomKind {
        given.isSpecified ? given : infer(text).symptom
    }

    /// `resolve(_:text:)` with the text already split by `normalizer`.
    public func resolve(_ given: SymptomKind, tokens: [String]) -> SymptomKind {
        given.isSpecified ? given : infer(tokens: tokens).symptom
    }

    /// The dominant symptom of a case (`Case.symptom`): the most frequent specified symptom among
    /// its reports (given oldest first); ties go to the most recently reported of the tied ones.
    public static func dominant(_ symptoms: [SymptomKind]) -> SymptomKind {
        var counts: [SymptomKind: Int] = [:]
        var lastSeen: [SymptomKind: Int] = [:]
        for (i, s) in symptoms.enumerated() where s.isSpecified {
            counts[s, default: 0] += 1
            lastSeen[s] = i
        }
        return counts.keys.max { a, b in
            (counts[a]!, lastSeen[a]!) < (counts[b]!, lastSeen[b]!)
        } ?? .unspecified
    }
}
