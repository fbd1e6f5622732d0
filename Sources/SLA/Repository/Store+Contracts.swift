import Foundation
import LiaisonAPI
import LiaisonRuntime
import LiaisonStorage
import SLADomain
import SwiftProtobuf

/// Contract lifecycle states (`Contract.State`).
enum ContractState: Int, Sendable {
    case draft = 1, active = 2, retired = 3
}

extension Store {
    static let contractColumns = "id, body, state, version, create_time, update_time"

    /// A stored contract with its output-only fields filled in.
    static func contract(_ r: PostgresRow) throws -> Liaison_Sla_V1_Contract {
        var k = try Liaison_Sla_V1_Contract(serializedBytes: try r.decode(ByteA.self, 1).bytes)
        k.name = "contracts/" + (try r.decode(String.self, 0))
        k.state = Liaison_Sla_V1_Contract.State(rawValue: Int(try r.decode(Int64.self, 2))) ?? .unspecified
        k.etag = etag(try r.decode(Int64.self, 3))
        k.createTime = timestamp(try r.decode(Date.self, 4))
        k.updateTime = timestamp(try r.decode(Date.self, 5))
        return k
    }

    static func contract(_ c: PostgresConnection, _ id: String, forUpdate: Bool = false) throws -> (Liaison_Sla_V1_Contract, Int64)? {
        guard let r = try c.query("SELECT \(contractColumns) FROM contracts WHERE id = $1\(forUpdate ? " FOR UPDATE" : "")", [id]).first
        else { return nil }
        return (try contract(r), try r.decode(Int64.self, 3))
    }

    static func body(_ k: Liaison_Sla_V1_Contract) throws -> ByteA {
        var stored = k
        stored.name = ""
        stored.etag = ""
        stored.clearCreateTime()
        stored.clearUpdateTime()
        stored.state = .unspecified
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        return ByteA(try stored.serializedBytes(options: options))
    }

    static func scopeColumns(_ k: Liaison_Sla_V1_Contract) -> (customer: String?, tier: Int?) {
        switch k.scope {
        case .customer(let name)?: (id(name, "customers"), nil)
        case .tier(let t)?: (nil, t.rawValue)
        case nil: (nil, nil)
        }
    }

    static func insertContract(_ c: PostgresConnection, id: String, _ k: Liaison_Sla_V1_Contract, now: Date) throws -> Bool {
        let scope = scopeColumns(k)
        return try c.query("""
            INSERT INTO contracts (id, body, state, customer_id, tier, services, effective_start, effective_end, create_time, update_time)
            VALUES ($1, $2, 1, $3, $4, $5::text[], $6, $7, $8, $8) ON CONFLICT DO NOTHING
            """, [id, try body(k), scope.customer, scope.tier, TextArray(k.services),
                  k.effectiveWindow.hasStartTime ? k.effectiveWindow.startTime.date : nil,
                  k.effectiveWindow.hasEndTime ? k.effectiveWindow.endTime.date : nil, now]).affectedRows > 0
    }

    /// Writes a contract's new body and state; returns the stored contract.
    static func updateContract(_ c: PostgresConnection, id: String, _ k: Liaison_Sla_V1_Contract, state: ContractState) throws -> Liaison_Sla_V1_Contract {
        let scope = scopeColumns(k)
        let r = try c.query("""
            UPDATE contracts SET body = $2, state = $3, customer_id = $4, tier = $5, services = $6::text[], effective_start = $7,
                effective_end = $8, version = version + 1, update_time = now()
            WHERE id = $1 RETURNING \(contractColumns)
            """, [id, try body(k), state.rawValue, scope.customer, scope.tier, TextArray(k.services),
                  k.effectiveWindow.hasStartTime ? k.effectiveWindow.startTime.date : nil,
                  k.effectiveWindow.hasEndTime ? k.effectiveWindow.endTime.date : nil]).first!
        return try contract(r)
    }

    static func deleteContract(_ c: PostgresConnection, id: String) throws {
        try c.query("DELETE FROM contracts WHERE id = $1", [id])
    }

    /// ACTIVE contracts of the same scope whose window overlaps [start, end).
    static func overlappingActive(_ c: PostgresConnection, _ k: Liaison_Sla_V1_Contract, excluding id: String, start: Date, end: Date?)
        throws -> [(Liaison_Sla_V1_Contract, Int64)] {
        let scope = scopeColumns(k)
        return try c.query("""
            SELECT \(contractColumns) FROM contracts
            WHERE state = 2 AND id <> $1 AND customer_id IS NOT DISTINCT FROM $2 AND tier IS NOT DISTINCT FROM $3
              AND (effective_end IS NULL OR effective_end > $4) AND ($5::timestamptz IS NULL OR effective_start < $5)
            FOR UPDATE
            """, [id, scope.customer, scope.tier, start, end]).rows.map { (try contract($0), try $0.decode(Int64.self, 3)) }
    }

    /// Customers a contract's scope covers (the customer, or every customer of the tier).
    static func markContractCustomersDirty(_ c: PostgresConnection, _ k: Liaison_Sla_V1_Contract) throws {
        let scope = scopeColumns(k)
        if let customer = scope.customer {
            try markCustomersDirty(c, [customer])
            try markIncidentsOfCustomerDirty(c, customer)
        } else if let tier = scope.tier {
            try c.query("""
                INSERT INTO dirty_customers SELECT DISTINCT i.customer_id FROM impacts i JOIN customers c ON c.id = i.customer_id
                WHERE c.tier = $1 ON CONFLICT DO NOTHING
                """, [tier])
            try c.query("INSERT INTO dirty_incidents SELECT id FROM incidents WHERE end_time IS NULL ON CONFLICT DO NOTHING")
        }
    }

    /// Every ACTIVE or RETIRED contract that may govern `customers` (theirs and their tiers'),
    /// with windows reaching past `from`.
    static func governingCandidates(_ c: PostgresConnection, customers: [String], tiers: [Int], from: Date) throws -> [ContractTerms] {
        try c.query("""
            SELECT \(contractColumns) FROM contracts
            WHERE state IN (2, 3) AND (customer_id = ANY($1::text[]) OR tier = ANY($2::int[]))
              AND (effective_end IS NULL OR effective_end > $3)
            """, [TextArray(customers), TextArray(tiers.map(String.init)), from]).rows.compactMap { try ContractTerms(try contract($0)) }
    }
}
