// Intake's enum filter fields: the contract enum mirrors, stored by value name.
import IntakeDomain
import LiaisonRuntime

extension FilterEnum {
    /// The values of a contract enum mirror, compared by full proto name (intake stores names).
    init<E: ContractEnum>(_ type: E.Type, prefix: String) {
        self.init(fullNames: Dictionary(E.known.map { ($0.protoName, $0.rawValue) }, uniquingKeysWith: { a, _ in a }),
                  prefix: prefix, storesNumber: false)
    }
}

extension FilterField {
    static func enumeration<E: ContractEnum>(_ c: String, _ type: E.Type, prefix: String) -> FilterField {
        .enumeration(c, FilterEnum(type, prefix: prefix))
    }

    static func hasEnum<E: ContractEnum>(_ c: String, _ type: E.Type, prefix: String) -> FilterField {
        .hasEnum(c, FilterEnum(type, prefix: prefix))
    }
}
