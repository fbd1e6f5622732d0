@_exported import LiaisonBytes
