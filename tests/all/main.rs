mod csv;
