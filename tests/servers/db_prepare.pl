# COM_STMT_PREPARE/COM_STMT_EXECUTE from a real client: Perl DBD::MariaDB with
# server-side prepared statements (PyMySQL has none). Run by db_app.py as its
# child, so the agent instruments it with the service.
#
#     perl db_prepare.pl PORT DATABASE
use strict;
use warnings;
use DBI;

my ($port, $database) = @ARGV;
my $dbh = DBI->connect(
    "DBI:MariaDB:database=$database;host=127.0.0.1;port=$port;mariadb_server_prepare=1",
    "root", "", { RaiseError => 1, PrintError => 0 });
# One statement prepared once, executed twice.
my $sth = $dbh->prepare("SELECT name FROM items WHERE id = ?");
for my $id (1, 2) {
    $sth->execute($id);
    $sth->fetchall_arrayref;
}
# A prepare the server refuses: no such table (1146).
my $failed = !eval { $dbh->prepare("SELECT * FROM nowhere WHERE id = ?")->execute(1); 1 };
die "expected error 1146, got " . ($DBI::err // "none") . "\n" unless $failed && $DBI::err == 1146;
$dbh->disconnect;
