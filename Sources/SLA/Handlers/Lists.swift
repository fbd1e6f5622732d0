// Filters and orderings of the List methods (the kit's FilterParser, ListOrdering and ListQuery).
import Foundation
import LiaisonRuntime

extension SLAHandler {
    static let contractStateValues = FilterEnum(["DRAFT": 1, "ACTIVE": 2, "RETIRED": 3])
    static let tierValues = FilterEnum(prefix: "TIER_", ["FREE": 1, "STANDARD": 2, "BUSINESS": 3, "ENTERPRISE": 4])
    static let sourceValues = FilterEnum(["REPORTED": 1, "BLAST_RADIUS": 2, "MANUAL": 3])
    static let budgetStateValues = FilterEnum(prefix: "BUDGET_STATE_", ["HEALTHY": 1, "AT_RISK": 2, "BREACHED": 3])
    static let objectiveValues = FilterEnum(prefix: "OBJECTIVE_KIND_", ["AVAILABILITY": 1, "TIME_TO_RESTORE": 2])
    static let creditStateValues = FilterEnum(["OWED": 1, "ISSUED": 2, "WAIVED": 3])

    static let contractFilter = FilterParser(domain: domain, fields: [
        "customer": .resource("coalesce(customer_id, '')", "customers"), "tier": .enumeration("coalesce(tier, 0)", tierValues),
        "state": .enumeration("state", contractStateValues), "services": .has("services"),
    ])
    static let contractOrderings: KeyValuePairs<String, ListOrdering> = [
        "name": .init(column: "id", key: .idOnly, descending: false, idType: "text"),
        "update_time desc": .init(column: "update_time", key: .time, descending: true, idType: "text"),
    ]

    static let impactFilter = FilterParser(domain: domain, fields: [
        "service": .text("service"), "incident": .resource("coalesce(incident_id::text, '')", "incidents"),
        "source": .enumeration("source", sourceValues), "excluded": .bool("excluded"),
        "interval.start_time": .time("start_time"), "interval.end_time": .time("end_time"),
    ])
    static let impactOrderings: KeyValuePairs<String, ListOrdering> = [
        "interval.start_time": .init(column: "start_time", key: .time, descending: false),
        "interval.start_time desc": .init(column: "start_time", key: .time, descending: true),
    ]

    static let budgetFilter = FilterParser(domain: domain, fields: [
        "state": .enumeration("state", budgetStateValues), "contract": .resource("contract_id", "contracts"),
        "budgets.service": .has("services"),
    ])
    static let budgetOrderings: KeyValuePairs<String, ListOrdering> = [
        "state desc": .init(column: "state", key: .integer, descending: true, idType: "text"),
        "customer": .init(column: "id", key: .idOnly, descending: false, idType: "text"),
    ]

    static let breachFilter = FilterParser(domain: domain, fields: [
        "customer": .resource("customer_id", "customers"), "contract": .resource("contract_id", "contracts"),
        "service": .text("service"), "objective_kind": .enumeration("objective_kind", objectiveValues),
        "incidents": .has("incidents"), "occur_time": .time("occur_time"),
    ])
    static let breachOrderings: KeyValuePairs<String, ListOrdering> = [
        "occur_time desc": .init(column: "occur_time", key: .time, descending: true),
        "occur_time": .init(column: "occur_time", key: .time, descending: false),
    ]

    static let creditFilter = FilterParser(domain: domain, fields: [
        "customer": .resource("customer_id", "customers"), "breach": .resource("breach_id::text", "breaches"),
        "state": .enumeration("state", creditStateValues), "create_time": .time("create_time"),
    ])
    static let creditOrderings: KeyValuePairs<String, ListOrdering> = [
        "create_time desc": .init(column: "create_time", key: .time, descending: true),
        "create_time": .init(column: "create_time", key: .time, descending: false),
    ]

    static let noFilter = FilterParser(domain: domain, fields: [:])
    static let atRiskOrderings: KeyValuePairs<String, ListOrdering> = [
        "breach_time": .init(column: "breach_time", key: .time, descending: false, idType: "text"),
    ]
}
