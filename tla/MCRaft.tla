------------------------------- MODULE MCRaft -------------------------------
(***************************************************************************)
(* A bounded model of Raft.tla for model checking: at most MaxTerm terms,  *)
(* MaxCommands client commands per log (blank entries are bounded by the   *)
(* terms), MaxInFlight messages in flight and MaxCrashed servers down at   *)
(* once. Bounds are state constraints, as the stateright model's           *)
(* within_boundary: a state past them is checked against the invariants    *)
(* but not explored further.                                               *)
(***************************************************************************)
EXTENDS Raft, TLC

CONSTANTS MaxTerm, MaxCommands, MaxInFlight, MaxCrashed

\* The client commands in a log: its entries other than blank ones.
Commands(xlog) == Cardinality({k \in 1..Len(xlog) : xlog[k].command /= Nil})

MCBounds ==
    /\ \A i \in Server : currentTerm[i] <= MaxTerm /\ Commands(log[i]) <= MaxCommands
    /\ BagCardinality(messages) <= MaxInFlight
    /\ Cardinality({i \in Server : crashed[i]}) <= MaxCrashed

\* Servers are interchangeable: explore one state of each permutation of their names.
MCSymmetry == Permutations(Server)

=============================================================================
