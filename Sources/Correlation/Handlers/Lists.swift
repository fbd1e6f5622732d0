// Filters, orderings and keyset paging of the List methods (the shared FilterParser and signed
// page tokens from LiaisonRuntime). A page token carries the sort key and id of the last row
// returned and a fingerprint of the list, parent, filter and order_by, so it continues exactly
// after that row (rows inserted meanwhile appear in later pages or not at all, never twice) and a
// token of another query is refused (INVALID_ARGUMENT on page_token, reason INVALID_PAGE_TOKEN).
import CorrelationDomain
import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage

extension CorrelationHandler {
    // MARK: Enum values of the filters

    static let incidentStateValues = FilterEnum(prefix: "INCIDENT_STATE_", ["DECLARED": 1, "ACKNOWLEDGED": 2, "MITIGATED": 3, "RESOLVED": 4])
    static let severityValues = FilterEnum(prefix: "SEVERITY_", ["SEV1": 1, "SEV2": 2, "SEV3": 3, "SEV4": 4, "SEV5": 5])
    static let sourceValues = FilterEnum(prefix: "INCIDENT_SOURCE_", ["MONITORING": 1, "MANUAL": 2, "EMERGING_ISSUE": 3])
    static let symptomValues = FilterEnum(prefix: "SYMPTOM_KIND_", ["SLOW": 1, "ERRORS": 2, "UNAVAILABLE": 3, "DATA": 4, "OTHER": 5])
    static let tierValues = FilterEnum(prefix: "TIER_", ["FREE": 1, "STANDARD": 2, "BUSINESS": 3, "ENTERPRISE": 4])
    static let linkStateValues = FilterEnum(["SUGGESTED": 1, "CONFIRMED": 2, "REJECTED": 3, "UNLINKED": 4])
    static let linkOriginValues = FilterEnum(["AUTOMATIC": 1, "MANUAL": 2])
    static let issueStateValues = FilterEnum(["OPEN": 1, "PROMOTED": 2, "DISMISSED": 3, "EXPLAINED": 4, "EXPIRED": 5])

    // MARK: Filterable fields (columns from migrations/0002_list_filters.sql)

    static let serviceFilter = FilterParser(domain: domain, fields: [
        "public": .bool("public"), "owner_team": .text("owner_team"),
        "aliases": .has("aliases", lowercased: true), "dependencies": .has("dependencies"),
    ])

    static let incidentFilter = FilterParser(domain: domain, fields: [
        "state": .enumeration("state", incidentStateValues), "severity": .enumeration("severity", severityValues),
        "services": .has("services"), "source": .enumeration("source", sourceValues),
        "create_time": .time("create_time"), "resolve_time": .time("resolve_time"),
        "external_reference.system": .text("coalesce(ext_system, '')"), "external_reference.id": .text("coalesce(ext_id, '')"),
        "labels": .map("labels"),
    ])

    static let linkFilter = FilterParser(domain: domain, fields: [
        "state": .enumeration("state", linkStateValues), "origin": .enumeration("origin", linkOriginValues),
        "score": .number("score"), "report": .resource("report_id", "reports"), "case": .name("case_name", "cases"),
        "customer": .name("customer", "customers"), "symptom": .enumeration("symptom", symptomValues),
        "report_receive_time": .time("report_receive_time"),
        "customer_snapshot.region": .text("snapshot_region"), "customer_snapshot.country": .text("snapshot_country"),
        "customer_snapshot.tier": .enumeration("snapshot_tier", tierValues),
        "customer_snapshot.account_partition": .text("snapshot_partition"),
        "customer_snapshot.account_number": .text("snapshot_account"),
        "customer_snapshot.white_glove": .bool("snapshot_white_glove"),
        "customer_snapshot.features": .has("snapshot_features"),
    ])

    static let issueFilter = FilterParser(domain: domain, fields: [
        "state": .enumeration("state", issueStateValues), "symptom": .enumeration("symptom", symptomValues),
        "service": .text("service"), "lift": .number("lift"), "adjusted_p_value": .number("adjusted_p"),
        "create_time": .time("create_time"),
    ])

    // MARK: Orderings

    /// The ordering named by `orderBy` (spaces collapsed; "" is the first, the default), and the
    /// normalized name for the token fingerprint.
    static let incidentOrderings: KeyValuePairs<String, ListOrdering> = [
        "create_time desc": .init(column: "create_time", key: .time, descending: true),
        "severity": .init(column: "severity", key: .integer, descending: false, then: "create_time"),
        "update_time desc": .init(column: "update_time", key: .time, descending: true),
    ]

    static let linkOrderings: KeyValuePairs<String, ListOrdering> = [
        "create_time": .init(column: "create_time", key: .time, descending: false),
        "score desc": .init(column: "score", key: .double, descending: true),
        "report_receive_time": .init(column: "report_receive_time", key: .time, descending: false),
    ]

    static let issueOrderings: KeyValuePairs<String, ListOrdering> = [
        "adjusted_p_value": .init(column: "adjusted_p", key: .double, descending: false),
        "create_time desc": .init(column: "create_time", key: .time, descending: true),
        "customer_count desc": .init(column: "customer_count", key: .integer, descending: true),
    ]

    // MARK: Paging

    /// The position `token` names, or nil for the first page; INVALID_ARGUMENT (page_token) when
    /// it is not one of ours, belongs to another query or has expired.
    func position(_ token: String, _ query: QueryFingerprint) throws -> PageToken? {
        if token.isEmpty { return nil }
        do {
            return try codec.decode(token, expecting: query)
        } catch {
            throw error.apiError(domain: domain)
        }
    }
}
