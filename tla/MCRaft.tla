------------------------------- MODULE MCRaft -------------------------------
(***************************************************************************)
(* A bounded model of Raft.tla for model checking: at most MaxTerm terms,  *)
(* MaxLogLength entries per log, MaxInFlight messages in flight and        *)
(* MaxCrashed servers down at once. Bounds are state constraints, as the   *)
(* stateright model's within_boundary: a state past them is checked        *)
(* against the invariants but not explored further.                        *)
(***************************************************************************)
EXTENDS Raft, TLC

CONSTANTS MaxTerm, MaxLogLength, MaxInFlight, MaxCrashed

MCBounds ==
    /\ \A i \in Server : currentTerm[i] <= MaxTerm /\ Len(log[i]) <= MaxLogLength
    /\ BagCardinality(messages) <= MaxInFlight
    /\ Cardinality({i \in Server : crashed[i]}) <= MaxCrashed

\* Servers are interchangeable: explore one state of each permutation of their names.
MCSymmetry == Permutations(Server)

=============================================================================
