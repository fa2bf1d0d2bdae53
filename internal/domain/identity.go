package domain

import (
	"github.com/fieldsync/fieldsync/sync/merge"
	"github.com/fieldsync/fieldsync/sync/vv"
)

// Role is what a token allows (PROTOCOL.md, Scope).
type Role string

// The roles of protocol v1.
const (
	RoleDevice     Role = "device"
	RoleSupervisor Role = "supervisor"
	RolePartner    Role = "partner"
	RoleAdmin      Role = "admin"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	switch r {
	case RoleDevice, RoleSupervisor, RolePartner, RoleAdmin:
		return true
	}
	return false
}

// Identity is who a request acts as, from its verified token.
type Identity struct {
	Subject    string // device id for devices; a user or client id otherwise
	Role       Role
	Unit       string // devices: the unit the device belongs to
	Contingent string // devices and supervisors: their contingent ("" for supervisors of all)
	TokenID    string // jti, when the token has one
	// Observes is set for partner tokens allowed to post corridor
	// observations (PROTOCOL.md: "only where its token allows").
	Observes bool
}

// Pushes reports whether the identity writes through push: devices, and
// partners allowed to post corridor observations.
func (id Identity) Pushes() bool {
	return id.Role == RoleDevice || id.Role == RolePartner && id.Observes
}

// Node is the version-vector node the identity writes as: a device's id (or
// an observing partner's subject), the server node for everyone else (their
// writes are server-authored).
func (id Identity) Node() vv.NodeID {
	if id.Pushes() {
		return vv.NodeID(id.Subject)
	}
	return vv.Server
}

// Collections of protocol v1.
const (
	PatrolLogs    = "patrol_logs"
	PatrolEntries = "patrol_entries"
	Corridors     = "corridors"
)

// Owner is the unit and contingent a record belongs to, kept beside the
// record for scoping. Corridors belong to everyone.
type Owner struct {
	Unit       string
	Contingent string
}

// CanWrite reports whether id may push a change to a record of collection
// owned by owner (the stored owner, or the one the change would create).
func (id Identity) CanWrite(collection string, owner Owner) bool {
	switch id.Role {
	case RolePartner:
		return id.Observes && collection == Corridors
	case RoleDevice:
		switch collection {
		case PatrolLogs, PatrolEntries:
			return owner.Unit == id.Unit && id.Unit != ""
		case Corridors:
			return true
		}
	}
	// Supervisors, partners and admins write through their own routes
	// (resolutions, sign-offs, observations), not through push.
	return false
}

// CanRead reports whether id may read a record of collection owned by owner.
func (id Identity) CanRead(collection string, owner Owner) bool {
	switch id.Role {
	case RoleAdmin:
		return true
	case RoleDevice:
		if collection == Corridors {
			return true
		}
		return owner.Unit == id.Unit && id.Unit != ""
	case RoleSupervisor:
		if collection == Corridors {
			return true
		}
		return id.Contingent == "" || owner.Contingent == id.Contingent
	case RolePartner:
		return collection == Corridors
	}
	return false
}

// SeesIdentities reports whether id may read the identifying fields
// (community contacts, informants) of a record owned by owner: only the
// authoring unit and its supervisors.
func (id Identity) SeesIdentities(owner Owner) bool {
	switch id.Role {
	case RoleDevice:
		return owner.Unit == id.Unit && id.Unit != ""
	case RoleSupervisor:
		return id.Contingent == "" || owner.Contingent == id.Contingent
	}
	return false
}

// View returns rec as id may see it: without internal fields for partners,
// without identifying fields for anyone outside the authoring unit and its
// supervisors. It returns rec itself when nothing is hidden.
func (id Identity) View(p *merge.Policy, rec *merge.Record, owner Owner) *merge.Record {
	hideInternal := id.Role == RolePartner
	hideIdent := !id.SeesIdentities(owner)
	if !hideInternal && !hideIdent {
		return rec
	}
	hidden := func(name string) bool {
		spec, ok := p.Field(name)
		return ok && (hideInternal && spec.Internal || hideIdent && spec.Identifying)
	}
	any := false
	for _, f := range rec.Fields {
		if hidden(f.Name) {
			any = true
			break
		}
	}
	if !any {
		return rec
	}
	out := *rec
	out.Fields = make([]merge.Field, 0, len(rec.Fields))
	for _, f := range rec.Fields {
		if !hidden(f.Name) {
			out.Fields = append(out.Fields, f)
		}
	}
	return &out
}
